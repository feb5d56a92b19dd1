"""What `emotrain fit` uses when options are left out: the recipe (a shipped name, a path, or the paper's settings with
the dataset's own emotions) and the run folder ./runs/<dataset>-coemogen. It trains nothing and loads no dataset.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from emocurate.core.recipes import find_recipe
from emotrain.recipe import TrainRecipe, load_recipe

RUNS = Path("runs")


@dataclass
class FitPlan:
    recipe: TrainRecipe
    out: Path
    notes: list[str]
    """Lines to print before training, for what was left to a default: which recipe (first), which run folder."""


def dataset_name(dataset: str) -> str:
    """`user/emoart` -> emoart; `runs/demo/dataset` (an emocurate run's output) -> demo; `data/photos` -> photos."""
    path = Path(dataset.rstrip("/"))
    name = path.name
    if name == "dataset" and path.parent.name:
        name = path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"


def pick_out(base: Path, resume: Optional[str]) -> tuple[Path, str]:
    """`base` when resuming (or under a multi-process launch, where every rank must agree); else the first of `base`,
    `base-2`, ... that is new or empty."""
    if resume or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return base, "resuming" if resume else "shared by every process"
    for i in itertools.count(1):
        folder = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return folder, "new" if i == 1 else f"new; {base} already holds a run (continue it with --resume latest --out {base})"


def plan_fit(dataset: str, recipe: Optional[str], out: Optional[Path], overrides: Sequence[str],
             resume: Optional[str] = None) -> FitPlan:
    """Load the recipe (a shipped name or path; none: the paper's settings) with the overrides and pick the run folder."""
    path = find_recipe(recipe, "train") if recipe else None
    parsed = load_recipe(path, overrides)
    if recipe:
        note = None  # chosen by the user: nothing to announce
    else:
        emotions = ("the dataset's own emotions (its emotion column's ClassLabel names or values)"
                    if parsed.data.emotions is None else f"emotions {', '.join(parsed.data.emotions)}")
        note = (f"recipe: the paper's settings (no --recipe: SD 1.5, rank-{parsed.hilora.rank} HiLoRA, lr {parsed.optim.lr:g}, "
                f"{parsed.optim.max_steps:,} steps) with {emotions}; `emotrain recipes` lists the shipped ones")
    if out is not None:
        folder, how = Path(out), None
    else:
        folder, how = pick_out(RUNS / f"{dataset_name(dataset)}-coemogen", resume)
    return FitPlan(parsed, folder, [line for line in (note, how and f"run folder: {folder} ({how})") if line])


def check_models(recipe: TrainRecipe) -> None:
    """Offline (HF_HUB_OFFLINE=1), name in one line the recipe's Hub models that are not in the cache, before any loads."""
    from emocurate.core.config import ConfigError
    from emocurate.core.hub import in_cache, looks_like_repo_id, offline

    models = dict.fromkeys((recipe.model.pretrained, recipe.model.clip))
    missing = [m for m in models if offline() and looks_like_repo_id(m) and not in_cache(m, "model")]
    if missing:
        raise ConfigError(f"offline (HF_HUB_OFFLINE=1) and not in the Hugging Face cache: model {', model '.join(missing)} "
                          "(run once online to download them, or unset HF_HUB_OFFLINE)")
