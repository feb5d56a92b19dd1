"""The run folder: what its stored scores came from (run.json), the recipe last used, and whether ingest finished.

Layout: run.json, recipe.yaml, models.json (model ids and revisions actually loaded), shards/<stage>/NNNNN.parquet
with NNNNN.done written last, shards/ingest/_complete.json, records.parquet, dataset/ (the publishable folder),
demo_images/ (the demo source), crawl/ (the URL crawler's state). It runs no stage.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import yaml

from emocurate.store import shards
from emocurate.core.config import ConfigError
from emocurate.recipe import CurateRecipe

INGEST_COMPLETE = "shards/ingest/_complete.json"


def _identity(recipe: CurateRecipe) -> dict:
    """What stored shards depend on: the inputs and the models. Thresholds are not part of it (refilter changes them)."""
    def pick(cfg, keys):
        return {k: getattr(cfg, k, None) for k in keys}

    return {
        "inputs": {"sources": list(recipe.sources), "limit": recipe.limit, "shard_size": recipe.shard_size,
                   "max_image_pixels": recipe.max_image_pixels, "max_image_side": recipe.max_image_side},
        "models": {"classify": pick(recipe.classify, ("backend", "model", "revision", "probe")),
                   "caption": pick(recipe.caption, ("backend", "model", "revision", "prompt")),
                   "clip_filter": pick(recipe.clip_filter, ("backend", "model", "pretrained", "revision"))},
    }


def prepare_run(run_dir: Path, recipe: CurateRecipe) -> None:
    """Create or check the run folder: a rerun must read the same inputs with the same models as the first run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shards.clean_tmp(run_dir)
    manifest = run_dir / "run.json"
    wanted = json.loads(json.dumps(_identity(recipe)))
    if manifest.exists():
        differs = mismatch(run_dir, recipe)
        if differs:
            raise ConfigError(f"{run_dir} was built with {differs}: stored shards would not match. "
                              "Use the same recipe to resume, or a new --out.")
    else:
        # the classifier runs over the emotions of the FIRST build (its scores are stored); later `emotions` values only
        # decide which of them are kept
        shards.write_json_atomic(manifest, {**wanted, "classifier_emotions": list(recipe.emotions)})
    save_recipe(run_dir, recipe)


def mismatch(run_dir: Path, recipe: CurateRecipe) -> Optional[str]:
    """What differs between the inputs and models RUN/run.json records and `recipe`'s; None if nothing (or no run.json)."""
    manifest = Path(run_dir) / "run.json"
    if not manifest.exists():
        return None
    have = json.loads(manifest.read_text())
    wanted = json.loads(json.dumps(_identity(recipe)))
    for part in ("inputs", "models"):
        for key, value in wanted[part].items():
            if have.get(part, {}).get(key) != value:
                return f"{part} {key}={have.get(part, {}).get(key)!r}, this command asks for {value!r}"
    return None


def classifier_emotions(run_dir: Path) -> list[str]:
    """The emotions the run's classifier scores (fixed by its first build)."""
    return json.loads((Path(run_dir) / "run.json").read_text())["classifier_emotions"]


def save_recipe(run_dir: Path, recipe: CurateRecipe) -> None:
    path = run_dir / "recipe.yaml"
    tmp = path.with_name(".recipe.yaml.tmp")
    tmp.write_text("# the recipe this run folder was last built or refiltered with\n" + yaml.safe_dump(asdict(recipe), sort_keys=False))
    tmp.replace(path)


def n_ingest_shards(run_dir: Path) -> Optional[int]:
    path = Path(run_dir) / INGEST_COMPLETE
    return json.loads(path.read_text())["shards"] if path.exists() else None
