"""`emotrain eval`: every metric for one or more folders of generated images, written to results.json and report.md.

A model's images live in `FOLDER/<emotion>/*.png`. Backbones are loaded once per metric and run over every model;
real images (FID) and captions (CLIP score) come from `eval.real`. Generation is not done here (see `cli_eval`).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from emocurate.core.config import to_dict
from emocurate.core.emotions import EMOTIONS
from emotrain.eval.config import EvalConfig
from emotrain.eval.metrics.images import list_images, pick_device

Progress = Callable[..., None]
"""`progress(task, advance=0, total=None)`: the project's progress convention (a rich bar per task in the CLI)."""

LIBRARIES = ("coemogen-toolkit", "torch", "torchvision", "transformers", "diffusers", "datasets", "lpips",
             "clean-fid", "numpy", "scipy", "Pillow")


@dataclass
class ModelImages:
    name: str
    folder: Path
    images: dict[str, list[Path]]
    """Image files per emotion, in EmoSet emotion order."""


def find_images(name: str, folder: str | Path) -> ModelImages:
    """A model's generated images: one subfolder per emotion; any other non-hidden subfolder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {name}={folder}: not a folder")
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subfolders or [p.name for p in subfolders] == ["grids"]:
        raise ValueError(f"{folder}: no emotion subfolders (one emotion's `emotrain generate --out` folder?): give the "
                         f"folder above it, or generate with `emotrain generate --emotion all --out DIR`, which writes "
                         f"DIR/<emotion>/")
    unknown = sorted(p.name for p in subfolders if p.name not in EMOTIONS)
    if unknown:
        raise ValueError(f"{folder}: subfolders {unknown} are not emotion names; expected one folder per emotion "
                         f"({', '.join(EMOTIONS)})")
    images = {e: list_images(folder / e) for e in EMOTIONS if (folder / e).is_dir()}
    empty = [e for e, paths in images.items() if len(paths) < 2]
    if not images or empty:
        raise ValueError(f"{folder}: every emotion folder needs at least 2 images; too few in {empty or 'all (none found)'}")
    return ModelImages(name=name, folder=folder, images=images)


def check_weights(cfg: EvalConfig) -> None:
    """Fail before any long work when a selected metric's weight file is unset or missing; names every option at once."""
    from emotrain.eval.metrics.fid import INCEPTION_URL
    from emotrain.eval.metrics.lpips_diversity import ALEXNET_URL
    from emotrain.eval.metrics.semantic_clarity import PLACES365_URL

    needed = {"fid": [("fid.inception", cfg.fid.inception, f"download {INCEPTION_URL}")],
              "lpips": [("lpips.alexnet", cfg.lpips.alexnet, f"download {ALEXNET_URL}")],
              "sem_c": [("sem_c.places365", cfg.sem_c.places365, f"download {PLACES365_URL}")]}
    if cfg.emo_a.backend == "clip-probe":
        needed["emo_a"] = [("emo_a.probe", cfg.emo_a.probe,
                            "train one with `emocurate train-classifier`, or set emo_a.backend=clip-zeroshot")]
    problems = []
    for metric in cfg.metrics:
        for option, value, hint in needed.get(metric, []):
            if not value:
                problems.append(f"{option} is not set (needed by {metric}; {hint})")
            elif not Path(value).exists():
                problems.append(f"{option}={value} does not exist (needed by {metric}; {hint})")
    if problems:
        raise FileNotFoundError("missing weights: " + "; ".join(problems) +
                                ". Set them in --config or as key=value overrides, or drop the metric with metrics=[...]")


def evaluate(cfg: EvalConfig, models: dict[str, str | Path], out_dir: str | Path,
             progress: Progress | None = None, generation: dict | None = None) -> dict:
    """Compute every metric in `cfg.metrics` for each model's images; write results.json + report.md into `out_dir`.

    `generation` (how the images were made, when `emotrain eval` made them) is stored in the results as is.
    """
    from emotrain.eval import report, runners

    if not models:
        raise ValueError("nothing to evaluate: give at least one images folder")
    check_weights(cfg)
    sets = [find_images(name, folder) for name, folder in models.items()]
    emotions = [e for e in EMOTIONS if any(e in s.images for s in sets)]
    real = None
    if {"fid", "clip_score"} & set(cfg.metrics):
        from emotrain.eval.real import load_real

        real = load_real(cfg.real, emotions, cfg.seed)
    run = runners.Run(cfg=cfg, sets=sets, real=real, device=pick_device(cfg.device), progress=progress)
    results = {
        "settings": {**settings(cfg, run.device, sets, real), "generation": generation},
        "models": {s.name: {"folder": str(s.folder), "images": {e: len(p) for e, p in s.images.items()},
                            "per_emotion": {e: {} for e in s.images}, "overall": {}} for s in sets},
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["metrics_done"] = []
    for metric in cfg.metrics:
        results["settings"]["backbones"][metric] = runners.RUNNERS[metric](run, results["models"])
        results["metrics_done"].append(metric)
        write_json(out_dir / "results.json", results)  # after each metric: a crash later keeps what was computed
    report.write_report(results, sets, out_dir, cfg.report)
    return results


def settings(cfg: EvalConfig, device: str, sets: list[ModelImages], real) -> dict:
    return {
        "config": to_dict(cfg),
        "device": device,
        "emotions": [e for e in EMOTIONS if any(e in s.images for s in sets)],
        "real": None if real is None else {
            "dataset": cfg.real.dataset, "revision": cfg.real.revision, "split": cfg.real.split,
            "fingerprint": real.fingerprint, "images": {e: len(rows) for e, rows in real.indices.items()},
        },
        "libraries": library_versions(),
        "python": platform.python_version(),
        "backbones": {},
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose behaviour the numbers depend on (None: not installed)."""
    from emotrain import __version__

    out: dict[str, str | None] = {"emotrain": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_json(path: Path, data: dict) -> None:
    """Write via a temporary file and rename, so a results.json that exists is complete."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to results.json")
