"""`emotrain reproduce`: parse options, build a Plan, call `emotrain.reproduce.reproduce`, print where the report is.

Registered in `emotrain/cli.py`; progress bars (one per row and step) are drawn here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emocurate.core.console import RichProgress, quiet_libraries


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{option} {item!r}: write NAME=VALUE")
        out[name] = value
    return out


def reproduce_command(
    table: int = typer.Option(..., "--table", help="1 (baselines + component ablations) or 2 (settings)."),
    dataset: str = typer.Option(..., "--dataset", help="The emotion-captioned dataset every row trains on."),
    out: Path = typer.Option(..., "--out", help="Report folder: report.md, results.json, rows/<row>/."),
    runs: Optional[Path] = typer.Option(None, "--runs", help="Trained runs (default OUT/runs); share it between tables."),
    rows: Optional[str] = typer.Option(None, "--rows", help="Comma list of row keys (default: every row)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps of every trained row (default: recipes')."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Recipe override for every trained row, key=value."),
    caption_datasets: Optional[List[str]] = typer.Option(None, "--caption-dataset",
        help="Table 2(a): PROMPT=DATASET, a dataset captioned with that emocurate prompt (repeatable)."),
    images: Optional[List[str]] = typer.Option(None, "--images", help="Extra row from images: NAME=DIR (e.g. EmoGen)."),
    n: int = typer.Option(1000, "-n", "--num-images", help="Images per emotion per row (the paper: 1,000)."),
    inference_steps: int = typer.Option(30, "--inference-steps"),
    guidance: float = typer.Option(7.5, "--guidance"),
    seed: int = typer.Option(0, "--seed"),
    gen_batch_size: int = typer.Option(4, "--gen-batch-size"),
    device: Optional[str] = typer.Option(None, "--device"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Eval settings: a name (emoset) or a YAML path."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Eval overrides key=value, e.g. fid.inception=PATH."),
):
    """Reproduce a table of the paper: train (or reuse) every row, generate, evaluate, one report. Resumable."""
    from emocurate.core.config import load
    from emocurate.core.recipes import find_recipe
    from emotrain.eval.config import EvalConfig
    from emotrain.eval.generate import GenerateSettings
    from emotrain.reproduce import Plan, reproduce
    from emotrain.train import TrainingStopped

    # user errors (ConfigError, ValueError, missing files) become one `error:` line in the app's error mapping
    eval_cfg = load(EvalConfig, find_recipe(config, "eval") if config else None, [*(overrides or []), *([f"device={device}"] if device else [])])
    plan = Plan(table=table, dataset=dataset, out=out, runs=runs,
                rows=[r.strip() for r in rows.split(",") if r.strip()] if rows else None, steps=steps,
                overrides=list(sets or []), caption_datasets=_pairs(list(caption_datasets or []), "--caption-dataset"),
                images={k: Path(v) for k, v in _pairs(list(images or []), "--images").items()})
    generation = GenerateSettings(n=n, seed=seed, steps=inference_steps, guidance=guidance,
                                  batch_size=gen_batch_size, device=device)
    quiet_libraries()
    try:
        with RichProgress(unit="it", label_width=28) as progress:
            _log_above(progress)
            merged = reproduce(plan, eval_cfg, generation, progress=progress)
    except TrainingStopped as err:
        typer.secho(f"{err}; rerun the same command to continue", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=130)
    typer.echo(f"{len(merged['models'])} rows; report: {out / 'report.md'}; numbers: {out / 'results.json'}")


def _log_above(progress) -> None:
    """emotrain's INFO messages (emotions, oversampling, "resumed from ...") printed above the bars."""
    import logging

    from rich.logging import RichHandler

    log = logging.getLogger("emotrain")
    if not log.handlers:
        log.addHandler(RichHandler(console=progress.bars.console, show_path=False, show_time=False))
        log.setLevel(logging.INFO)
