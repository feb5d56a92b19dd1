"""The `emocurate` command line: parse, call one library function, print. Rich progress bars live here only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from emocurate.core.console import RichProgress, check_out_folder, debug_option, error_lines_group

# Our rich bars show progress; the Hub/transformers tqdm bars ("Loading weights") would only interleave with them.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# cls: every exception a command raises becomes one `error:` line, exit 2 (fix the command) or 1 (the machine refused)
app = typer.Typer(add_completion=False, no_args_is_help=True, cls=error_lines_group(), pretty_exceptions_show_locals=False,
                  help="Curate an emotion-captioned image dataset: ingest -> classify -> caption -> CLIP filter -> publish.")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (or set EMOCURATE_DEBUG=1).")):
    debug_option(debug)


@app.command()
def build(
    source: Optional[List[str]] = typer.Option(None, "--source", "-s", help="wikiart, demo, emoset:PATH, folder:PATH, hf:REPO, "
                                               "urls:FILE (repeatable); replaces the recipe's sources."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="A recipe name (`emocurate recipes`) or YAML path. "
                                         "Default: the source's own (wikiart: emoart, emoset: emoset, demo: demo), "
                                         "else the paper's settings with all eight emotions."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: shards, records.parquet, dataset/. Rerun "
                                       "to resume. Default: runs/<source name> (a new name if it holds other inputs)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Read at most N input items in total."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Stop after records.parquet (no dataset/ folder)."),
    ignore_robots: bool = typer.Option(False, "--ignore-robots",
                                       help="urls: ignore robots.txt and X-Robots-Tag opt-outs (recorded in the card)."),
    allow_hosts: Optional[List[str]] = typer.Option(None, "--allow-hosts",
                                                    help="urls: hosts or networks exempt from the private-address guard."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="urls: retry URLs that failed with a retryable error."),
    executor: str = typer.Option("local", "--executor", help="local: this process, stage by stage; ray: a Ray cluster "
                                 "(needs the ray extra). Either resumes the other's run folder."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: an existing cluster "
                                              "(e.g. auto); default: a local Ray runtime on loopback."),
    ray_allow_network: bool = typer.Option(False, "--ray-allow-network", help="Start the local Ray runtime without the "
                                           "loopback proxy guard (Ray then probes cloud metadata at 169.254.169.254)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides: key=value (e.g. classify.min_confidence=0.8)."),
):
    """Run (or resume) the whole pipeline into a run folder; finished shards are never redone."""
    from rich.console import Console
    from rich.markup import escape

    from emocurate.executors import check_options
    from emocurate.run.defaults import plan_build
    from emocurate.run.driver import build as run_build
    from emocurate.run.preflight import check_ready

    items = list(overrides or [])
    if limit is not None:
        items.append(f"limit={limit}")
    if ignore_robots:
        items.append("crawl.ignore_robots=true")
    if allow_hosts:
        items.append("crawl.allow_hosts=" + json.dumps([h for entry in allow_hosts for h in entry.split(",") if h]))
    if retry_failed:
        items.append("crawl.retry_failed=true")
    check_options(executor, ray_address, ray_allow_network)
    plan = plan_build(recipe, list(source or []), out, items)
    check_out_folder(plan.out)
    for line in plan.notes:
        Console(soft_wrap=True).print(escape(line), highlight=False)
    check_ready(plan.recipe, plan.out)
    with RichProgress() as progress:
        summary = run_build(plan.recipe, plan.out, progress, publish=not no_publish, executor=executor,
                            ray_address=ray_address, ray_allow_network=ray_allow_network)
    _print_summary(summary, plan.out)
    if plan.recipe.report:
        _write_report(plan.out)


def _print_summary(summary: dict, out: Path) -> None:
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{summary['records']}[/] records: [green]{summary['kept']} kept[/], {summary['dropped']} dropped "
                  f"-> {out / 'records.parquet'}")
    for name, st in (summary.get("stages") or {}).items():
        work = st["seconds"] - st["load_s"]
        rate = f", {st['items'] / work:.1f} items/s" if st.get("items") and work > 0 else ""
        load = f" (model load {st['load_s']:.1f} s)" if st["load_s"] else ""
        items = f"{st['items']} items, " if st.get("items") is not None else ""
        console.print(f"  {name:>10}: {items}{st['seconds']:.1f} s{load}{rate}")
    if (out / "crawl").is_dir():
        from emocurate.crawl.state import summary as crawl_summary

        counts = crawl_summary(out / "crawl")
        console.print("  fetch status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    for warning in summary.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"dataset: {summary['dataset']}" if summary["dataset"]
                  else f"[yellow]dataset not written:[/] {summary.get('dataset_not_written')}")
    console.print(f"see `emocurate status {out}`")


recipes_app = typer.Typer(help="The shipped curation recipes: list them, or print one to copy and edit.")
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback(invoke_without_command=True)
def recipes(ctx: typer.Context):
    """List the curation recipes (`emocurate build --recipe NAME`) with what each is for."""
    if ctx.invoked_subcommand is None:
        print_recipes(["curate"])


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="A recipe name, e.g. emoart.")):
    """Print a recipe (redirect it to a file, edit, pass the file to --recipe)."""
    show_recipe(name, "curate")


def print_recipes(kinds: list[str]) -> None:
    from emocurate.core.recipes import listing

    typer.echo("\n".join(listing(kinds)))


def show_recipe(name: str, kind: str) -> None:
    from emocurate.core.recipes import find_recipe

    typer.echo(find_recipe(name, kind).read_text(encoding="utf-8"), nl=False)


@app.command()
def status(run: Path = typer.Argument(..., help="Run folder."), as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Counts per stage x emotion, drops by stage and errors by reason (a duckdb view over RUN/records.parquet)."""
    from emocurate.recipe import load_recipe
    from emocurate.run.status import run_status

    emotions = load_recipe(run / "recipe.yaml").emotions if (run / "recipe.yaml").exists() else None
    data = run_status(run, emotions)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_status(data)


def _print_status(data: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(emoji=False)  # "folder:x:1.jpg" is a source id, not the :x: emoji
    console.print(f"[bold]{escape(data['run'])}[/]: {data['records']} records, " +
                  ", ".join(f"{k} {v}" for k, v in data["status"].items()) +
                  (" [yellow](live: decided from the finished shards; the build has not written records.parquet)[/]"
                   if data.get("live") else ""))
    if data.get("pending_at_stage"):
        console.print("pending (not processed yet; the running or next build does it): " +
                      ", ".join(f"{stage} {n}" for stage, n in data["pending_at_stage"].items()))
    stages = data["remaining_after_stage"]
    emotions = list(dict.fromkeys(e for per in stages.values() for e in per))  # EmoSet order, then others
    table = Table(title="records remaining after each stage, per emotion")
    for col in ("emotion", *stages):
        table.add_column(col, justify="left" if col == "emotion" else "right")
    for e in emotions:
        table.add_row(e, *(str(per.get(e, 0)) for per in stages.values()))
    table.add_row("total", *(str(sum(per.values())) for per in stages.values()), style="bold")
    console.print(table)
    reasons = Table(title="dropped, by reason")
    for col in ("stage", "reason", "n", "example"):
        reasons.add_column(col, justify="right" if col == "n" else "left")
    for r in data["reasons"]:
        reasons.add_row(r["stage"], escape(r["reason"]), str(r["n"]), escape(r["example"] or ""))
    console.print(reasons)


@app.command()
def refilter(
    run: Path = typer.Argument(..., help="Run folder."),
    set_: List[str] = typer.Option(..., "--set", help="Decision key=value (repeatable), e.g. classify.min_confidence=0.6."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Only rewrite records.parquet."),
):
    """Re-apply thresholds to stored scores (no model runs); rewrites records.parquet and dataset/."""
    from emocurate.run.driver import refilter as run_refilter

    summary = run_refilter(run, list(set_), publish=not no_publish)
    _print_summary(summary, run)
    from emocurate.recipe import load_recipe

    if load_recipe(run / "recipe.yaml").report:
        _write_report(run)


def _write_report(run: Path, out: Optional[Path] = None, thumbnails: bool = True) -> None:
    from emocurate.report.site import write_report

    with RichProgress() as progress:
        done = write_report(run, out, thumbnails=thumbnails, progress=progress)
    typer.echo(f"report: {done['index']} ({done['records']} records, {done['thumbnails']} thumbnails); open it in a browser")


@app.command()
def report(
    run: Path = typer.Argument(..., help="Run folder (with records.parquet)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder [default: RUN/report]."),
    no_thumbnails: bool = typer.Option(False, "--no-thumbnails", help="Skip making thumbnails (earlier ones are kept)."),
):
    """Write a static HTML report of RUN (overview, what-if thresholds, gallery); it opens from disk, offline."""
    _write_report(run, out, thumbnails=not no_thumbnails)


@app.command()
def push(
    run: Path = typer.Argument(..., help="Run folder whose dataset/ is uploaded."),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repo, user/name."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
):
    """Upload RUN/dataset/ to the Hub (token from HF_TOKEN or `hf auth login`)."""
    from emocurate.run.publish import push_run

    url = push_run(run, repo, private)
    typer.echo(url)


@app.command("train-classifier")
def train_classifier(
    dataset: str = typer.Option(..., "--dataset", help="Labelled images: emoset:PATH, folder:PATH (emotion dirs), a Hub id, "
                                                          "a local data folder or a save_to_disk folder."),
    out: Path = typer.Option(..., "--out", help="Folder for the probe (probe.safetensors + probe_config.json)."),
    split: str = typer.Option("train", "--split"),
    clip_model: str = typer.Option("openai/clip-vit-large-patch14", "--clip-model"),
    image_column: str = typer.Option("image", "--image-column"),
    label_column: str = typer.Option("emotion", "--label-column"),
    emotions: Optional[str] = typer.Option(None, "--emotions", help="Comma-separated subset (default: all eight)."),
    epochs: int = typer.Option(100, "--epochs"),
    lr: float = typer.Option(1e-2, "--lr"),
    batch_size: int = typer.Option(256, "--batch-size"),
    val_fraction: float = typer.Option(0.1, "--val-fraction"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
):
    """Train the `clip-probe` classifier: a linear head on CLIP image embeddings (e.g. of EmoSet-118K)."""
    from emocurate.stages.classify import train_probe
    from emocurate.core.emotions import EMOTIONS, check_emotions
    from emocurate.stages.labelled import labelled_dataset

    check_out_folder(out)
    names = list(check_emotions([e.strip() for e in emotions.split(",")])) if emotions else list(EMOTIONS)
    data = labelled_dataset(dataset, split)
    with RichProgress() as progress:
        done = [0]

        def embed_progress(n_done: int, total: int) -> None:
            progress("embed", n_done - done[0], total)
            done[0] = n_done

        result = train_probe(data, out, clip_model=clip_model, image_column=image_column, label_column=label_column,
                             emotions=names, epochs=epochs, lr=lr, batch_size=batch_size, val_fraction=val_fraction,
                             seed=seed, device=device, progress=embed_progress)
    typer.echo(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    app()
