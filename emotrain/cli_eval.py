"""`emotrain eval`: parse options, (optionally) generate images, call `evaluate`, print where the report is.

Rich progress bars live here only. Register with `app.command("eval")(eval_command)` in `emotrain/cli.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emocurate.core.console import RichProgress, check_out_folder, quiet_libraries

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def eval_command(
    images: Optional[List[str]] = typer.Option(None, "--images",
        help="Generated images, one subfolder per emotion: DIR or NAME=DIR (repeatable)."),
    real: Optional[str] = typer.Option(None, "--real",
        help="Real images: a Hub dataset id or local folder with image + emotion columns."),
    out: Path = typer.Option(..., "--out", "-o",
        help="Report folder: results.json, report.md, PNGs (and images/ when generating)."),
    model: Optional[Path] = typer.Option(None, "--model",
        help="A trained emotrain run: generate -n images per emotion first (resumable)."),
    n: int = typer.Option(1000, "-n", "--num-images", help="Images per emotion to generate (the paper: 1,000)."),
    baseline: Optional[str] = typer.Option(None, "--baseline",
        help="'sd': also generate with plain SD 1.5, prompt 'an image of {emotion}'."),
    base_model: str = typer.Option(SD15, "--base-model",
        help="The baseline's pipeline: Hub id, local folder or tiny:sd."),
    base_revision: Optional[str] = typer.Option(None, "--base-revision", help="Hub revision of --base-model."),
    emotions: Optional[str] = typer.Option(None, "--emotions",
        help="Comma list of emotions to generate (default: those in --real)."),
    seed: int = typer.Option(0, "--seed", help="Generation seed (the SD baseline: image i uses seed + i)."),
    steps: int = typer.Option(30, "--steps", help="Denoising steps when generating."),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale when generating."),
    scheduler: str = typer.Option("dpm-solver++", "--scheduler",
        help="Sampler of every generated row (--model and --baseline alike): dpm-solver++ | ddim | pndm | euler | euler-a."),
    gen_batch_size: int = typer.Option(4, "--gen-batch-size", help="Images per generation batch."),
    config: Optional[str] = typer.Option(None, "--config", "-c",
        help="Eval settings: a name (`emotrain recipes`, e.g. emoset) or a YAML path (backbone paths, pairs, ...)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: cuda when available)."),
    overrides: Optional[List[str]] = typer.Argument(None,
        help="Settings overrides key=value, e.g. fid.inception=/w/inception-2015-12-05.pt"),
):
    """Score generated images with FID, LPIPS, Emo-A, Sem-C, Sem-D (+ CLIP score); write results.json and report.md."""
    from emocurate.core.config import load
    from emocurate.core.recipes import find_recipe
    from emocurate.core.emotions import check_emotions
    from emotrain.eval.config import EvalConfig
    from emotrain.eval.evaluate import evaluate
    from emotrain.eval.generate import GenerateSettings, generate_images
    from emotrain.eval.request import check_request, parse_images

    items = list(overrides or [])
    if real:
        items.append(f"real.dataset={real}")
    if device:
        items.append(f"device={device}")
    cfg = load(EvalConfig, find_recipe(config, "eval") if config else None, items)
    check_out_folder(out)
    named = parse_images(list(images or []))
    check_request(cfg, named, model, baseline, base_model, base_revision)
    settings = GenerateSettings(n=n, seed=seed, steps=steps, guidance=guidance, batch_size=gen_batch_size,
                                device=device, scheduler=scheduler)
    generation = None
    quiet_libraries()
    with RichProgress(unit="img", label_width=16) as progress:
        if model is not None or baseline is not None:
            wanted = check_emotions(emotions.split(",")) if emotions else _real_emotions(cfg)
            folders, generation = generate_images(out, wanted, settings, model=model,
                                                  baseline_model=base_model if baseline else None,
                                                  baseline_revision=base_revision, progress=progress)
            named = {**folders, **named}
        results = evaluate(cfg, named, out, progress=progress, generation=generation)
    _print_summary(results, out)


def _real_emotions(cfg) -> tuple[str, ...]:
    from emocurate.core.emotions import EMOTIONS
    from emotrain.eval.real import load_real

    if not cfg.real.dataset:
        return EMOTIONS
    return tuple(load_real(cfg.real, None, cfg.seed).indices)


def _print_summary(results: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from emotrain.eval.report import MAIN_COLUMNS

    columns = [c for c in MAIN_COLUMNS if any(m["overall"].get(c[0]) is not None for m in results["models"].values())]
    table = Table(title="emotrain eval (Table 1 metrics; the rest is in report.md)")
    table.add_column("model")
    for _, title, _ in columns:
        table.add_column(title, justify="right")
    for name, entry in results["models"].items():
        overall = entry["overall"]
        table.add_row(name, *[fmt.format(overall[k]) if k in overall else "-" for k, _, fmt in columns])
    console = Console()
    console.print(table)
    console.print(f"report: {out / 'report.md'}")
    console.print(f"every number and setting: {out / 'results.json'}")
