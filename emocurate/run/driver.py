"""`build` and `refilter`: the one driver. It decides what each stage still has to do, hands the shards to an executor,
writes every file from what the executor yields, then decides the records and publishes them.

The order is ingest -> classify -> caption -> clip_filter (the stage table, stages/table.py), each stage over every shard
that still needs it; models load only when a shard does. Decisions (run/decide.py) are re-derived from stored scores.
The run folder's layout is described in run/folder.py; executors (emocurate/executors/) compute and write nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pyarrow as pa

from emocurate.core.progress import no_progress
from emocurate.executors import open_executor
from emocurate.executors.protocol import IngestShard
from emocurate.recipe import CurateRecipe, check_refilter_overrides, load_recipe
from emocurate.run.decide import decide_run
from emocurate.core.config import ConfigError
from emocurate.run.folder import check_out, make_run_dir, prepare_run, save_recipe, unpin
from emocurate.run.lock import locked
from emocurate.run.plan import merge_into_shard, stage_todo
from emocurate.run.publish import publish_records
from emocurate.stages.ingest import META_COLUMNS
from emocurate.stages.table import INGEST, MODEL_STAGES, Stage
from emocurate.store import shards
from emocurate.store.manifest import INGEST_COMPLETE, n_ingest_shards


# ---------------------------------------------------------------- ingest
def _shards_to_ingest(recipe: CurateRecipe, run_dir: Path, progress, crawl_cfg, counts: dict) -> Iterator[IngestShard]:
    """The sources read in order, cut into shards of `shard_size`; a stored shard's items are only counted."""
    from emocurate.sources import iter_items

    index, seq, buffer = 0, 0, []
    for item in iter_items(recipe.sources, run_dir, recipe.limit, progress, crawl_cfg):
        buffer.append(None if shards.is_done(run_dir, INGEST, index) else item)  # no bytes kept for stored shards
        progress("ingest", 1, recipe.limit)
        if len(buffer) == recipe.shard_size:
            if not shards.is_done(run_dir, INGEST, index):
                yield IngestShard(index, seq, buffer)
            index, seq, buffer = index + 1, seq + len(buffer), []
    if buffer:
        if not shards.is_done(run_dir, INGEST, index):
            yield IngestShard(index, seq, buffer)
        index, seq = index + 1, seq + len(buffer)
    counts.update(shards=index, items=seq)


def ingest_all(recipe: CurateRecipe, run_dir: Path, executor, progress, crawl_cfg=None) -> int:
    """Every source into ingest shards (finished ones skipped); returns the number of shards."""
    done = n_ingest_shards(run_dir)
    if done is not None:
        return done
    counts: dict = {}
    for index, table in executor.ingest(_shards_to_ingest(recipe, run_dir, progress, crawl_cfg, counts)):
        shards.write_shard(run_dir, INGEST, index, table)
    if counts["items"] == 0:
        raise ValueError(f"the sources {recipe.sources} gave no items: nothing to curate (check the paths and --limit)")
    progress("ingest", 0, counts["items"])  # the total is known now: completes the bar
    shards.write_json_atomic(run_dir / INGEST_COMPLETE, counts)
    return counts["shards"]


# ---------------------------------------------------------------- model stages
class _ModelsFile:
    """RUN/models.json: the backend, model and revision each stage actually loaded (for provenance)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "models.json"
        self.info = json.loads(self.path.read_text()) if self.path.exists() else {}

    def note(self, stage: str, info: dict) -> None:
        if self.info.get(stage) != info:
            self.info[stage] = info
            shards.write_json_atomic(self.path, self.info)


def run_stage(stage: Stage, run_dir: Path, recipe: CurateRecipe, n: int, meta: pa.Table, executor, progress,
              models: _ModelsFile) -> dict:
    """Hand `stage` every shard it still needs and store each result; returns its items and model-loading seconds."""
    records = decide_run(run_dir, recipe, n) if stage.input is not None else None
    todo = stage_todo(stage, run_dir, meta, records, n)
    total = sum(t.num_rows for t in todo.values())
    progress(stage.name, 0, total)
    load_s = 0.0  # workers load in parallel: the longest load counts
    for result in executor.run(stage, todo, lambda k: progress(stage.name, k)):
        models.note(stage.name, result.model)
        merge_into_shard(run_dir, stage, result.shard, result.table)
        load_s = max(load_s, result.load_s)
    return {"items": total, "load_s": load_s}


def _timed(stages: dict, name: str, fn) -> dict:
    start = time.perf_counter()
    out = fn() or {}
    stages[name] = {"seconds": round(time.perf_counter() - start, 3), "load_s": round(out.get("load_s", 0.0), 3),
                    "items": out.get("items")}
    return out


def repair_damaged(run_dir: Path) -> list[str]:
    """Forget finished shards whose file is unreadable or truncated, so this build redoes them; one warning each."""
    warnings = []
    for folder in (INGEST, *(stage.folder for stage in MODEL_STAGES)):
        for path in shards.damaged(run_dir, folder):
            shards.forget(run_dir, folder, path)
            if folder == INGEST:
                (run_dir / INGEST_COMPLETE).unlink(missing_ok=True)  # ingest reads the sources again for that shard
            warnings.append(f"{path} was damaged (unreadable or truncated): it is redone")
    return warnings


# ---------------------------------------------------------------- entry points
def build(recipe: CurateRecipe, run_dir: str | Path, progress=None, publish: bool = True, crawl_cfg=None,
          executor: str = "local", **executor_options) -> dict:
    """Run (or resume) every stage on `executor` (local or ray; options: ray_address, ray_allow_network, ray_num_cpus),
    write RUN/records.parquet and (unless `publish` is False) RUN/dataset/.

    RUN must be new, empty or a run folder (anything else is refused untouched); one build at a time holds it.
    Returns a summary with, per stage, the items it processed in this call, its seconds and its model-loading seconds."""
    progress = progress or no_progress
    run_dir = Path(run_dir).resolve()  # workers may not share the driver's working directory
    check_out(run_dir)
    ex = open_executor(executor, recipe, run_dir, **executor_options)  # a missing device fails here, before any work
    try:
        made = make_run_dir(run_dir)
        with locked(run_dir):
            return _build(recipe, run_dir, ex, progress, publish, crawl_cfg if crawl_cfg is not None else recipe.crawl, made)
    finally:
        ex.close()  # ends device workers or the Ray session, if any


def _build(recipe: CurateRecipe, run_dir: Path, ex, progress, publish: bool, crawl_cfg, made: bool) -> dict:
    warnings = repair_damaged(run_dir)
    pinned = prepare_run(run_dir, recipe)
    stages: dict[str, dict] = {}
    try:
        n = _timed(stages, "ingest", lambda: {"shards": ingest_all(recipe, run_dir, ex, progress, crawl_cfg)})["shards"]
    except (ConfigError, OSError, ValueError):
        if pinned:  # a mistyped or empty source must not pin the folder: the corrected command starts afresh
            unpin(run_dir, made)
        raise
    meta = shards.read_stage(run_dir, INGEST, n, META_COLUMNS)
    stages["ingest"]["items"] = meta.num_rows
    models = _ModelsFile(run_dir)
    for stage in MODEL_STAGES:
        _timed(stages, stage.name, lambda: run_stage(stage, run_dir, recipe, n, meta, ex, progress, models))
    records = decide_run(run_dir, recipe, n)
    shards.write_parquet_atomic(run_dir / "records.parquet", records)
    dataset, why_not = None, "--no-publish"
    if publish:
        dataset, why_not = _publish(stages, run_dir, recipe, records)
    return summarize(records, stages, dataset, why_not, warnings)


def _publish(stages: dict, run_dir: Path, recipe: CurateRecipe, records: pa.Table):
    start = time.perf_counter()
    dataset, why_not = publish_records(run_dir, recipe, records)
    stages["publish"] = {"seconds": round(time.perf_counter() - start, 3), "load_s": 0.0, "items": None}
    return dataset, why_not


def refilter(run_dir: str | Path, overrides: list[str], publish: bool = True) -> dict:
    """Re-apply decision keys (thresholds, emotion set, dedup) to the stored scores; no model is loaded or run."""
    run_dir = Path(run_dir)
    check_refilter_overrides(overrides)
    if n_ingest_shards(run_dir) is None:
        raise ValueError(f"{run_dir} has no finished ingest: run `emocurate build` first")
    with locked(run_dir):
        return _refilter(run_dir, overrides, publish)


def _refilter(run_dir: Path, overrides: list[str], publish: bool) -> dict:
    n = n_ingest_shards(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    records = decide_run(run_dir, recipe, n)
    shards.write_parquet_atomic(run_dir / "records.parquet", records)
    save_recipe(run_dir, recipe)
    dataset, why_not = publish_records(run_dir, recipe, records) if publish else (None, "--no-publish")
    return summarize(records, {}, dataset, why_not)


def summarize(records: pa.Table, stages: dict, dataset, why_not: Optional[str] = None,
              warnings: Sequence[str] = ()) -> dict:
    status = records.column("status").to_pylist()
    return {"records": len(status), "kept": status.count("kept"), "dropped": status.count("dropped"),
            "stages": stages, "dataset": str(dataset) if dataset else None, "dataset_not_written": why_not,
            "warnings": list(warnings)}
