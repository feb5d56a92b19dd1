"""`emotrain` command line: fit, baseline fit, generate, export, push, eval, reproduce. Parses, calls one library function,
prints; heavy libraries load inside the commands so `--help` is instant.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from emocurate.core.console import check_out_folder, debug_option, error_lines_group, quiet_libraries

app = typer.Typer(
    help="Fine-tune Stable Diffusion 1.5 the CoEmoGen way and generate emotion-evoking images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=error_lines_group(),  # every exception a command raises: one `error:` line, exit 2 (fix the command) or 1
)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (or set EMOCURATE_DEBUG=1).")):
    debug_option(debug)


def _is_main_process() -> bool:
    """Under `accelerate launch` / torchrun only rank 0 draws the bar and prints."""
    return os.environ.get("RANK", "0") == "0"


class _Bar:
    """A rich bar (rank 0 only) that appears at the first progress report, i.e. once the inputs were checked and the
    models loaded, and whose rate counts only work done since then (not resumed work, not loading)."""

    def __init__(self, label: str, unit: str, fields: tuple[str, ...] = ()):
        self.label, self.unit, self.fields = label, unit, fields
        self.bars = self.task = None
        self.first = self.last = None  # (done, clock()) of the first and latest report
        self.clock = time.perf_counter

    def update(self, done: int, total: int, **fields) -> None:
        now = self.clock()
        if self.bars is None:
            self.first = (done, now)
            self.bars = self._progress()
            self.bars.start()
            self.task = self.bars.add_task(self.label, total=total, rate="", **{k: "-" for k in self.fields})
        self.last = (done, now)
        rate = self.rate()
        shown = f"{rate:.2f} {self.unit}/s" if rate else f"- {self.unit}/s"
        self.bars.update(self.task, completed=done, total=total, rate=shown, **fields)

    def rate(self) -> float | None:
        """Units per second between the first and the latest report (None before two reports that differ)."""
        if self.first is None or self.last[0] <= self.first[0] or self.last[1] <= self.first[1]:
            return None
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])

    def _progress(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            *[TextColumn(f"{k} {{task.fields[{k}]}}") for k in self.fields],
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not _is_main_process(),
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.stop()


def _log_to_console() -> None:
    """emotrain's own INFO messages (emotions, oversampling counts, resume point) on the console, rank 0 only."""
    import logging

    from rich.logging import RichHandler

    log = logging.getLogger("emotrain")
    if _is_main_process() and not log.handlers:
        log.addHandler(RichHandler(show_path=False, show_time=False))
        log.setLevel(logging.INFO)


def _mix_or_emotion(emotion: Optional[str], mix: Optional[str]):
    from emotrain.generate import parse_mix

    if bool(emotion) == bool(mix):
        raise ValueError("give exactly one of --emotion NAME or --mix a:0.5,b:0.5")
    return emotion if emotion else parse_mix(mix)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def fit(
    dataset: str = typer.Option(..., "--dataset", help="Hub id (user/name, downloaded), load_dataset folder or "
                                "save_to_disk folder (e.g. runs/demo/dataset)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="A recipe name (`emotrain recipes`) or YAML path. Default: "
                                         "the paper's settings with the dataset's own emotions."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (checkpoints, weights, card). Default: "
                                       "runs/<dataset>-coemogen (a new name if it holds a run)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint folder."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides key=value, e.g. optim.lr=5e-4."),
) -> None:
    """Train CoEmoGen (Mapper + Visual-perception Encoder + HiLoRA, L_LDM + lambda L_SEM) on an emotion dataset."""
    from emotrain.data import check_source
    from emotrain.defaults import check_models, plan_fit
    from emotrain.train import TrainingStopped, train

    plan = plan_fit(dataset, recipe, out, overrides or [], resume)
    if _is_main_process():
        for line in plan.notes:
            typer.echo(line)
    parsed, out = plan.recipe, plan.out
    check_out_folder(out)
    check_source(dataset)
    check_models(parsed)
    quiet_libraries()
    _log_to_console()
    bar = _Bar("fit", "steps", ("loss",))

    def progress(step: int, total_steps: int, info: dict) -> None:
        bar.update(step, total_steps, loss=f"{info.get('loss', float('nan')):.4f}")

    cache_bar, cached = _Bar("feature cache", "images"), {"done": 0, "total": None}

    def cache_progress(name: str, advance: int = 0, total: Optional[int] = None) -> None:
        """The feature-cache precompute (rows encoded): its own bar, before the steps start."""
        cached["total"] = total if total is not None else cached["total"]
        cached["done"] += advance
        cache_bar.update(cached["done"], cached["total"])

    try:
        with cache_bar, bar:
            run = train(parsed, dataset, out, max_steps=max_steps, resume=resume, progress=progress,
                        cache_progress=cache_progress)
    except TrainingStopped as err:
        if _is_main_process():
            typer.secho(str(err), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    rate = f" ({bar.rate():.2f} steps/s)" if bar.rate() else ""
    if _is_main_process():
        typer.echo(f"trained {run}{rate}")


@app.command()
def generate(
    model: Path = typer.Option(..., "--model", help="A trained run folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the images and the grid (default: MODEL/generated)."),
    emotion: Optional[str] = typer.Option(None, "--emotion",
                                          help="Emotion name (awe), a comma list, or 'all': one OUT/<emotion>/ each."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Emotion fusion, e.g. amusement:0.5,awe:0.5."),
    n: int = typer.Option(8, "-n", "--num-images"),
    seed: int = typer.Option(0, "--seed"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Neutral prompt for emotion transfer, e.g. 'a city street'."),
    steps: int = typer.Option(30, "--steps"),
    guidance: float = typer.Option(7.5, "--guidance"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
        help="dpm-solver++ | ddim | pndm | euler | euler-a (default: the run's run.scheduler, the card's sampler)."),
    batch_size: int = typer.Option(4, "--batch-size"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Generate images that evoke an emotion (or a mix, or an emotion inside a neutral prompt), plus one grid PNG.

    Several emotions (`--emotion all` or `--emotion awe,fear`) go into OUT/<emotion>/: the layout `emotrain eval --images OUT`
    reads as it is."""
    from emotrain.generate import generate as run_generate

    out = out if out is not None else model / "generated"
    quiet_libraries()
    target = _mix_or_emotion(emotion, mix)
    check_out_folder(out)
    jobs = [(target, out)]
    if isinstance(target, str) and (target == "all" or "," in target):
        jobs = [(e, out / e) for e in _model_emotions(model, target)]
    for what, folder in jobs:
        with _Bar(f"generate {what}" if len(jobs) > 1 else "generate", "img") as bar:
            paths = run_generate(model, what, n, seed, folder, prompt=prompt, steps=steps, guidance=guidance,
                                 batch_size=batch_size, device=device, scheduler=scheduler,
                                 progress=bar.update)
        rate = f" ({bar.rate():.2f} img/s)" if bar.rate() else ""
        if len(jobs) == 1:
            typer.echo(f"wrote {len(paths)} images to {out} and a grid to {out / 'grids'}{rate}")
    if len(jobs) > 1:
        typer.echo(f"wrote {n} images per emotion to {out}/<emotion>/ (grids in each grids/); "
                   f"score them with `emotrain eval --images {out}`")


def _model_emotions(model: Path, spec: str) -> list[str]:
    """`all` -> the run's emotions (its config.json); `a,b` -> those names, checked against the emotion table."""
    import json

    from emocurate.core.emotions import check_emotions

    if spec != "all":
        return list(check_emotions([s.strip() for s in spec.split(",") if s.strip()]))
    config = model / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{model} is not a trained run (no config.json)")
    return list(json.loads(config.read_text())["emotions"])


@app.command()
def export(
    model: Path = typer.Option(..., "--model", help="A trained run folder."),
    out: Path = typer.Option(..., "--out"),
    emotion: Optional[str] = typer.Option(None, "--emotion"),
    mix: Optional[str] = typer.Option(None, "--mix", help="Export a fusion, e.g. amusement:0.5,awe:0.5."),
    fmt: str = typer.Option("diffusers", "--format", help="diffusers | kohya"),
    token: Optional[str] = typer.Option(None, "--token", help="Textual-inversion token (default <emotion>)."),
    num_vectors: int = typer.Option(1, "--num-vectors", help="Embedding vectors: the cluster mean, then draws."),
) -> None:
    """Export one emotion as a standard LoRA (polarity + emotion adapters, Eq. 3) and a textual-inversion embedding."""
    from emotrain.export_run import export_run

    quiet_libraries()
    check_out_folder(out)
    paths = export_run(model, _mix_or_emotion(emotion, mix), out, fmt, token, num_vectors)
    for path in paths:
        typer.echo(str(path))


@app.command()
def push(
    run: Path = typer.Argument(..., help="A trained run folder."),
    repo: str = typer.Option(..., "--repo", help="Hub model repo, user/name."),
    private: bool = typer.Option(False, "--private"),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also upload checkpoints/ (optimizer states: large)."),
) -> None:
    """Upload a run folder (weights, clusters, config, card, samples) to the Hugging Face Hub; token from env or login."""
    from emotrain.push import push_run

    url = push_run(run, repo, private=private, include_checkpoints=checkpoints)
    typer.echo(url)


baseline_app = typer.Typer(help="The paper's Table 1 baselines (Textual Inversion, DreamBooth) on the same dataset.",
                           no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("fit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def baseline_fit(
    method: str = typer.Option(..., "--method", help="textual-inversion | dreambooth"),
    dataset: str = typer.Option(..., "--dataset", help="The dataset CoEmoGen trains on (Hub id or folder)."),
    out: Path = typer.Option(..., "--out", help="Run folder; `emotrain generate/eval --model` read it."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Baseline recipe YAML (recipes/train/baselines/)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint folder."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides key=value, e.g. optim.max_steps=3000."),
) -> None:
    """Fit Textual Inversion (one learned token per emotion) or DreamBooth (one UNet, full fine-tune)."""
    from emocurate.core.config import ConfigError
    from emotrain.baselines import METHODS
    from emotrain.baselines.recipe import load_baseline_recipe

    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    parsed = load_baseline_recipe(recipe, method, overrides or [])
    check_out_folder(out)
    from emotrain.baselines.train import fit_baseline
    from emotrain.train import TrainingStopped

    quiet_libraries()
    _log_to_console()
    bar = _Bar(method, "steps", ("loss",))
    try:
        with bar:
            run = fit_baseline(parsed, dataset, out, max_steps=max_steps, resume=resume,
                               progress=lambda step, total, info: bar.update(step, total, loss=f"{info['loss']:.4f}"))
    except TrainingStopped as err:
        if _is_main_process():
            typer.secho(str(err), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    if _is_main_process():
        typer.echo(f"trained {run}; sample with `emotrain generate --model {run}` or score with `emotrain eval --model {run}`")


recipes_app = typer.Typer(help="The shipped training and evaluation recipes: list them, or print one to copy and edit.")
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback(invoke_without_command=True)
def recipes(ctx: typer.Context) -> None:
    """List the training recipes (`emotrain fit --recipe NAME`) and eval settings (`emotrain eval --config NAME`)."""
    from emocurate.core.recipes import listing

    if ctx.invoked_subcommand is None:
        typer.echo("\n".join(listing(["train", "eval"])))


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="A recipe name, e.g. coemogen-emoart.")) -> None:
    """Print a training recipe (or, if there is none of that name, an eval config) to copy and edit."""
    from emocurate.core.recipes import find_recipe, list_recipes

    is_eval = name in {r.name for r in list_recipes("eval")} - {r.name for r in list_recipes("train")}
    typer.echo(find_recipe(name, "eval" if is_eval else "train").read_text(encoding="utf-8"), nl=False)


from emotrain.cli_eval import eval_command  # noqa: E402  (typer only: the eval library loads inside the command)

app.command("eval")(eval_command)

from emotrain.cli_reproduce import reproduce_command  # noqa: E402  (typer only, like eval)

app.command("reproduce")(reproduce_command)


if __name__ == "__main__":
    app()
