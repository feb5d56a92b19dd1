"""The stage table: each model stage's name, shard folder, result keys, model loader and per-shard function.

The driver, status, build summaries and every executor read it; adding a model stage is a row here. Ingest is not a
model stage (it reads the sources: stages/ingest.py). It loads and runs; it never decides what to run or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow as pa

from emocurate.stages import per_shard
from emocurate.store import shards
from emocurate.store.manifest import classifier_emotions

INGEST = "ingest"
"""Ingest's shard folder (its rows carry the image bytes every model stage reads)."""


@dataclass(frozen=True)
class Stage:
    name: str
    """The one spelling: the recipe section, `dropped_by` in records, progress bars, build summaries, models.json."""
    folder: str
    """Shard folder: RUN/shards/<folder>/ (store.shards maps it to an older run's legacy name)."""
    keys: tuple[str, ...]
    """A new result row replaces a stored row with the same values in these columns."""
    input: Optional[str]
    """The record column the stage works on besides the image (None: the image alone, once per id)."""
    schema: Optional[pa.Schema]
    """Result table schema (None: it depends on the model, e.g. one column per classifier emotion)."""
    load: Callable[[Any, Path], Any]
    """(recipe section, run folder) -> loaded model with `backend`, `model_id`, `revision`."""
    run: Callable[..., pa.Table]
    """(rows with image_bytes, model, batch size, tick) -> result table (stages/per_shard.py)."""
    provenance: Callable[[Any], dict]
    """What models.json records about the loaded model beyond backend, model and revision."""
    retry_failures: bool = False
    """Whether records this stage failed on (an error, not a decision) are handed to it again on the next build."""


def _classifier(cfg, run_dir: Path):
    from emocurate.stages.classify import load_classifier

    return load_classifier(cfg, classifier_emotions(run_dir))


def _captioner(cfg, run_dir: Path):
    from emocurate.stages.caption import load_captioner

    return load_captioner(cfg)


def _scorer(cfg, run_dir: Path):
    from emocurate.stages.clip_filter import load_scorer

    return load_scorer(cfg)


MODEL_STAGES = (
    Stage("classify", "classify", ("id",), None, None, _classifier, per_shard.classify_shard,
          lambda m: {"emotions": list(m.emotions)}),
    Stage("caption", "caption", ("id", "caption_emotion"), "emotion", per_shard.CAPTION_SCHEMA, _captioner,
          per_shard.caption_shard, lambda m: {"prompt": m.prompt_text("{emotion}")}, retry_failures=True),
    Stage("clip_filter", "clip_filter", ("id", "caption"), "caption", per_shard.CLIP_FILTER_SCHEMA, _scorer,
          per_shard.clip_filter_shard, lambda m: {}),
)
STAGE = {stage.name: stage for stage in MODEL_STAGES}


def load_model(stage: Stage, recipe, run_dir: Path) -> tuple[Any, dict]:
    """The stage's model as the recipe names it, and its provenance for RUN/models.json."""
    model = stage.load(getattr(recipe, stage.name), Path(run_dir))
    return model, {"backend": model.backend, "model": model.model_id, "revision": model.revision, **stage.provenance(model)}


def rows_with_bytes(run_dir: Path, shard: int, keys: pa.Table) -> pa.Table:
    """`keys` (with an `id` column) plus that shard's stored image bytes for each id, in `keys` order."""
    ingest = shards.read_shard(run_dir, INGEST, shard, ["id", "image_bytes"])
    blobs: dict[str, bytes] = {}
    for id_, blob in zip(ingest.column("id").to_pylist(), ingest.column("image_bytes").to_pylist()):
        if blob is not None:
            blobs.setdefault(id_, blob)
    missing = [i for i in keys.column("id").to_pylist() if i not in blobs]
    if missing:
        raise RuntimeError(f"ingest shard {shard} of {run_dir} lacks the bytes of {missing[:3]}: the run folder is damaged")
    return keys.append_column("image_bytes", pa.array([blobs[i] for i in keys.column("id").to_pylist()], pa.binary()))


def run_shard(stage: Stage, recipe, model, run_dir: Path, shard: int, keys: pa.Table,
              tick: Optional[Callable[[int], None]] = None) -> pa.Table:
    """One shard of one stage: its rows read from RUN, through the stage's per-shard function."""
    rows = rows_with_bytes(run_dir, shard, keys)
    return stage.run(rows, model, getattr(recipe, stage.name).batch_size, tick)
