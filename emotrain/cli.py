"""`emotrain` command line: fit, generate, export, push (and eval when installed). Parses, calls one library function,
prints; heavy libraries load inside the commands so `--help` is instant.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from emocurate.core.console import quiet_libraries

app = typer.Typer(
    help="Fine-tune Stable Diffusion 1.5 the CoEmoGen way and generate emotion-evoking images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _is_main_process() -> bool:
    """Under `accelerate launch` / torchrun only rank 0 draws the bar and prints."""
    return os.environ.get("RANK", "0") == "0"


def _progress_bar(unit: str, fields: dict):
    """A rich bar with count, rate (unit/s), extra fields (e.g. loss), elapsed time and ETA (rank 0 only)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            u = task.fields.get("unit", unit)
            return Text(f"{task.speed:.2f} {u}/s" if task.speed else f"- {u}/s")

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
        *[TextColumn(f"{k} {{task.fields[{k}]}}") for k in fields],
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not _is_main_process(),
    )


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
    dataset: str = typer.Option(..., "--dataset", help="Hub id, load_dataset folder or save_to_disk folder."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, weights, card)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Training recipe YAML (default: the paper's settings)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint folder."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides key=value, e.g. optim.lr=5e-4."),
) -> None:
    """Train CoEmoGen (Mapper + Visual-perception Encoder + HiLoRA, L_LDM + lambda L_SEM) on an emotion dataset."""
    try:
        from emocurate.core.config import ConfigError
        from emotrain.data import DatasetError
        from emotrain.recipe import load_recipe
        from emotrain.train import TrainingStopped, train
    except ImportError as err:  # pragma: no cover - broken install
        _fail(err)
    try:
        parsed = load_recipe(recipe, overrides or [])
    except ConfigError as err:
        _fail(err)
    quiet_libraries()
    _log_to_console()
    total = max_steps or parsed.optim.max_steps
    bar = _progress_bar("steps", {"loss": 0})
    task = bar.add_task("fit", total=total, loss="-")
    timing: dict = {}

    def progress(step: int, total_steps: int, info: dict) -> None:
        timing.setdefault("first", (step, time.perf_counter()))
        timing["last"] = (step, time.perf_counter())
        bar.update(task, completed=step, total=total_steps, loss=f"{info.get('loss', float('nan')):.4f}")

    cache_tasks: dict = {}

    def cache_progress(name: str, advance: int = 0, total: Optional[int] = None) -> None:
        """The feature-cache precompute (rows encoded) on its own line above the steps."""
        if name not in cache_tasks:
            cache_tasks[name] = bar.add_task(name, total=total, loss="-", unit="images")
        bar.update(cache_tasks[name], advance=advance, **({"total": total} if total is not None else {}))

    try:
        with bar:
            run = train(parsed, dataset, out, max_steps=max_steps, resume=resume, progress=progress,
                        cache_progress=cache_progress)
    except TrainingStopped as err:
        if _is_main_process():
            typer.secho(str(err), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    except (DatasetError, ConfigError, OSError, ValueError) as err:  # OSError: a model or file that cannot be loaded
        _fail(err)
    rate = ""
    if "first" in timing and timing["last"][0] > timing["first"][0]:
        (s0, t0), (s1, t1) = timing["first"], timing["last"]
        rate = f" ({(s1 - s0) / (t1 - t0):.2f} steps/s)"
    if _is_main_process():
        typer.echo(f"trained {run}{rate}")


@app.command()
def generate(
    model: Path = typer.Option(..., "--model", help="A trained run folder."),
    out: Path = typer.Option(..., "--out", help="Folder for the images and the grid."),
    emotion: Optional[str] = typer.Option(None, "--emotion", help="Emotion name, e.g. awe."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Emotion fusion, e.g. amusement:0.5,awe:0.5."),
    n: int = typer.Option(8, "-n", "--num-images"),
    seed: int = typer.Option(0, "--seed"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Neutral prompt for emotion transfer, e.g. 'a city street'."),
    steps: int = typer.Option(30, "--steps"),
    guidance: float = typer.Option(7.5, "--guidance"),
    batch_size: int = typer.Option(4, "--batch-size"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Generate images that evoke an emotion (or a mix, or an emotion inside a neutral prompt), plus one grid PNG."""
    from emotrain.generate import generate as run_generate

    quiet_libraries()
    try:
        target = _mix_or_emotion(emotion, mix)
        bar = _progress_bar("img", {})
        task = bar.add_task("generate", total=n)
        with bar:
            paths = run_generate(model, target, n, seed, out, prompt=prompt, steps=steps, guidance=guidance,
                                 batch_size=batch_size, device=device,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (OSError, ValueError) as err:
        _fail(err)
    typer.echo(f"wrote {len(paths)} images to {out} and a grid to {out / 'grids'}")


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
    try:
        paths = export_run(model, _mix_or_emotion(emotion, mix), out, fmt, token, num_vectors)
    except (OSError, ValueError) as err:
        _fail(err)
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

    try:
        url = push_run(run, repo, private=private, include_checkpoints=checkpoints)
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    typer.echo(url)


from emotrain.cli_eval import eval_command  # noqa: E402  (typer only: the eval library loads inside the command)

app.command("eval")(eval_command)


if __name__ == "__main__":
    app()
