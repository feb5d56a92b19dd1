"""The run folder: what its stored scores came from (run.json), the recipe last used, and whether ingest finished.

Layout: run.json, recipe.yaml, models.json (model ids and revisions actually loaded), shards/<stage>/NNNNN.parquet
with NNNNN.done written last, shards/ingest/_complete.json, records.parquet, dataset/ (the publishable folder),
demo_images/ (the demo source), crawl/ (the URL crawler's state), report/ (`emocurate report`). It runs no stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import yaml

from emocurate.store import shards
from emocurate.run.lock import LOCK
from emocurate.store.manifest import MANIFEST
from emocurate.core.config import ConfigError
from emocurate.recipe import CurateRecipe



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


class RunFolderError(ConfigError):
    """The folder cannot be used as a run folder as asked; the message says what to do."""


def check_out(run_dir: Path) -> None:
    """Refuse, touching nothing, an --out that is a file or a non-empty folder that is not a run folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} is a file: give the path of a new or empty folder (or a run folder)")
    if run_dir.is_dir() and not (run_dir / MANIFEST).exists():
        others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise RunFolderError(f"--out {run_dir} holds other files ({shown}) and is not an emocurate run folder (no "
                                 f"{MANIFEST}): choose a new or empty folder; nothing was written")


def make_run_dir(run_dir: Path) -> bool:
    """Create the run folder (and its parents); True when it did not exist. An OSError (read-only, no permission)
    when it cannot be written: an environment problem, which the command line reports as one line, exit code 1."""
    existed = run_dir.is_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    probe = run_dir / f".write-test.{os.getpid()}.tmp"
    probe.write_bytes(b"")
    probe.unlink()
    return not existed


def prepare_run(run_dir: Path, recipe: CurateRecipe) -> bool:
    """Create or check the run folder: a rerun must read the same inputs with the same models as the first run.
    Returns True when this call pinned the run (wrote run.json): `unpin` undoes that if its inputs turn out missing.
    Call it while holding the run's lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shards.clean_tmp(run_dir)
    manifest = run_dir / MANIFEST
    wanted = json.loads(json.dumps(_identity(recipe)))
    if manifest.exists():
        differs = mismatch(run_dir, recipe)
        if differs:
            raise ConfigError(f"{run_dir} was built with {differs}: stored shards would not match. "
                              "Use the same recipe to resume, or a new --out.")
        save_recipe(run_dir, recipe)
        return False
    # the classifier scores the classes of the FIRST build (its scores are stored): `classify.emotions`, None = all of
    # the model's classes; the recipe's `emotions` only decide which of them are kept (refilter may change it)
    shards.write_json_atomic(manifest, {**wanted, "classifier_emotions": recipe.classify.emotions})
    save_recipe(run_dir, recipe)
    return True


def mismatch(run_dir: Path, recipe: CurateRecipe) -> Optional[str]:
    """What differs between the inputs and models RUN/run.json records and `recipe`'s; None if nothing (or no run.json)."""
    manifest = Path(run_dir) / MANIFEST
    if not manifest.exists():
        return None
    have = json.loads(manifest.read_text())
    wanted = json.loads(json.dumps(_identity(recipe)))
    scored = have.get("classifier_emotions")
    if recipe.classify.emotions is not None and recipe.classify.emotions != scored:
        stored = scored or "all of the model's classes"
        return (f"classifier scores for {stored}, this command asks classify.emotions={recipe.classify.emotions} "
                "(leave classify.emotions as the first build had it: the recipe's `emotions` chooses what is kept)")
    for part in ("inputs", "models"):
        for key, value in wanted[part].items():
            if have.get(part, {}).get(key) != value:
                return f"{part} {key}={have.get(part, {}).get(key)!r}, this command asks for {value!r}"
    return None


def unpin(run_dir: Path, made_dir: bool) -> None:
    """Undo a first build whose inputs were missing or empty: no run.json or recipe is left to refuse the corrected
    command. Stored shards (none, unless some were finished) are kept; a folder this build made is removed if empty."""
    if any((run_dir / "shards").rglob("*.done")):
        return
    for name in (MANIFEST, "recipe.yaml", "models.json"):
        (run_dir / name).unlink(missing_ok=True)
    for sub in ("shards", "demo_images"):
        if (run_dir / sub).is_dir():
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    if made_dir:
        (run_dir / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty


def save_recipe(run_dir: Path, recipe: CurateRecipe) -> None:
    """RUN/recipe.yaml, without credentials written into caption.base_url (http://user:key@host -> http://host)."""
    from emocurate.publish.secrets import strip_credentials

    data = asdict(recipe)
    data["caption"]["base_url"] = strip_credentials(data["caption"]["base_url"])
    path = run_dir / "recipe.yaml"
    tmp = path.with_name(".recipe.yaml.tmp")
    tmp.write_text("# the recipe this run folder was last built or refiltered with\n" + yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
