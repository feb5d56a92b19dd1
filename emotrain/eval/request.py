"""What `emotrain eval` was asked to score, checked before anything is generated: image folders by name, a trained run
and/or the SD baseline, every weight file and model id available. It generates and scores nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def parse_images(items: list[str]) -> dict[str, Path]:
    """`NAME=DIR` or `DIR` (named after the folder) -> {name: folder}; duplicate names are an error."""
    out: dict[str, Path] = {}
    for item in items:
        name, _, folder = item.partition("=") if "=" in item else (Path(item).name, "", item)
        if not name or not folder:
            raise ValueError(f"--images {item!r}: use DIR or NAME=DIR")
        if name in out:
            raise ValueError(f"--images: the name {name!r} is used twice; give NAME=DIR to tell them apart")
        out[name] = Path(folder)
    return out


def check_request(cfg, named: dict[str, Path], model: Optional[Path], baseline: Optional[str], base_model: str,
                  base_revision: Optional[str]) -> None:
    """Raise a ValueError or FileNotFoundError naming what to fix: an unknown baseline, nothing to score, a name used
    twice, a missing metric weight file or model id (before generating for hours)."""
    from emotrain.eval.availability import PIPELINE_FILE, check_models, eval_models, run_models
    from emotrain.eval.evaluate import check_weights
    from emotrain.eval.generate import BASELINE_NAME

    if baseline not in (None, "sd"):
        raise ValueError(f"--baseline {baseline!r}: only 'sd' (plain Stable Diffusion 1.5) is built in")
    if not named and model is None and baseline is None:
        raise ValueError("nothing to evaluate: give --images DIR, --model RUN or --baseline sd")
    planned = ([model.name] if model is not None else []) + ([BASELINE_NAME] if baseline else [])
    clash = sorted(set(planned) & set(named))
    if clash:
        raise ValueError(f"--images names {clash} are taken by the models generated here; pick other NAME=DIR names")
    check_weights(cfg)
    check_models([*eval_models(cfg), *(run_models(model) if model is not None else []),
                  *([("--base-model", base_model, base_revision, PIPELINE_FILE)] if baseline else [])])
