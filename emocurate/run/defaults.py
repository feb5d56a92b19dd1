"""What `emocurate build` runs when options are left out: the sources' natural recipe, and a run folder under ./runs/
named after the sources (a new name when that folder holds a run of other inputs). It runs no stage.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from emocurate.core.config import ConfigError
from emocurate.core.recipes import find_recipe
from emocurate.recipe import CurateRecipe, load_recipe
from emocurate.run.folder import mismatch
from emocurate.run.lock import LOCK
from emocurate.sources import WIKIART_REPO, parse_spec
from emocurate.store.manifest import MANIFEST

RUNS = Path("runs")


@dataclass
class BuildPlan:
    recipe: CurateRecipe
    out: Path
    notes: list[str]
    """Lines to print before the run, for what was left to a default: which recipe (first), which run folder."""


def natural_recipe(spec: str) -> Optional[str]:
    """The shipped recipe made for a source: wikiart -> emoart, emoset: -> emoset, demo -> demo; None for any other."""
    kind = spec.partition(":")[0]
    parsed = parse_spec(spec)
    if kind == "wikiart" or (parsed.kind == "hf" and parsed.target == WIKIART_REPO):
        return "emoart"
    return {"emoset": "emoset", "demo": "demo"}.get(parsed.kind)


def run_name(sources: Sequence[str]) -> str:
    """A folder name for the sources: demo, wikiart, the last part of a path or repo id (`folder:/x/photos` -> photos)."""
    names = []
    for spec in sources:
        parsed = parse_spec(spec)
        if spec.partition(":")[0] == "wikiart" or parsed.target == WIKIART_REPO:
            name = "wikiart"
        elif parsed.kind == "demo":
            name = "demo"
        else:
            target = Path(parsed.target.rstrip("/"))
            name = target.stem if parsed.kind == "urls" else target.name
        names.append(re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or parsed.kind)
    return "+".join(dict.fromkeys(names[:3])) + (f"+{len(names) - 3}more" if len(names) > 3 else "")


def pick_run_dir(base: Path, recipe: CurateRecipe) -> tuple[Path, str]:
    """`base`, or `base-2`, `base-3`, ...: the first that is new, empty, or a run of the same inputs and models (resumed)."""
    taken: list[str] = []
    for i in itertools.count(1):
        folder = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not folder.exists() or (folder.is_dir() and not [p for p in folder.iterdir() if p.name != LOCK]):
            note = "new" if not taken else f"new; {taken[0]}"
            return folder, note
        if (folder / MANIFEST).is_file():
            differs = mismatch(folder, recipe)
            if differs is None:
                return folder, "resuming: same inputs and models"
            if not taken:
                taken.append(f"{folder} holds a run of other {differs.split(' ', 1)[0]}")
        elif not taken:
            taken.append(f"{folder} exists and is not a run folder")


def plan_build(recipe: Optional[str], sources: Sequence[str], out: Optional[Path], overrides: Sequence[str]) -> BuildPlan:
    """Pick the recipe and run folder and load the recipe with the overrides (then `preflight.check_ready` it)."""
    sources = list(sources)
    if not recipe and not sources:
        raise ConfigError("give --source (e.g. --source demo, --source wikiart, --source folder:PATH) or --recipe NAME "
                          "(`emocurate recipes` lists them)")
    for spec in sources:
        parse_spec(spec)  # an unknown source is named before anything else
    items = list(overrides) + (["sources=" + json.dumps(sources)] if sources else [])
    if recipe:
        path = find_recipe(recipe, "curate")
        note = None  # chosen by the user: nothing to announce
    else:
        natural = {natural_recipe(s) for s in sources}
        name = natural.pop() if len(natural) == 1 else None
        if name:
            path = find_recipe(name, "curate")
            note = f"recipe: {name} (the recipe for source {' '.join(sources)}; choose another with --recipe NAME or PATH)"
        else:
            path = None
            note = (f"recipe: the paper's default settings with all eight emotions ({' '.join(sources)} has no recipe of "
                    "its own; choose one with --recipe NAME or PATH, `emocurate recipes` lists them)")
    cfg = load_recipe(path, items)
    if out is not None:
        folder, how = Path(out), None
    else:
        folder, how = pick_run_dir(RUNS / run_name(cfg.sources), cfg)
    return BuildPlan(cfg, folder, [line for line in (note, how and f"run folder: {folder} ({how})") if line])
