"""`build` and `refilter`: run the stages shard by shard over a run folder, then decide and publish.

The order is ingest -> classify -> caption -> clip score, each stage over every shard, skipping shards whose marker
exists; models are loaded only when a shard still needs them. Decisions (decide.py) are re-derived from stored scores.
The run folder's layout is described in run_folder.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from emocurate.store import shards
from emocurate.run.decide import CAPTION_SCHEMA, CLIPSCORE_SCHEMA, NOT_SCORED, classify_schema, decide
from emocurate.executors.devices import DevicePool, on_device, resolve_devices, spreads
from emocurate.stages.ingest import INGEST_SCHEMA, META_COLUMNS, ingest_shard
from emocurate.core.progress import no_progress
from emocurate.run.publish import publish_records
from emocurate.recipe import CurateRecipe, check_refilter_overrides, load_recipe
from emocurate.run.folder import INGEST_COMPLETE, classifier_emotions, n_ingest_shards, prepare_run, save_recipe
from emocurate.stages.per_shard import caption_shard, classify_shard, clipscore_shard


# ---------------------------------------------------------------- stages
def ingest_all(recipe: CurateRecipe, run_dir: Path, progress, crawl_cfg=None) -> int:
    """Read the sources in order into shards of `shard_size` items; finished shards are skipped (their items only counted)."""
    done = n_ingest_shards(run_dir)
    if done is not None:
        return done
    from emocurate.sources import iter_items

    index, seq, buffer = 0, 0, []

    def flush():
        nonlocal index, seq, buffer
        if not shards.is_done(run_dir, "ingest", index):
            table = ingest_shard(buffer, index, seq, recipe.max_image_pixels, recipe.max_image_side, recipe.decode_workers)
            shards.write_shard(run_dir, "ingest", index, table)
        seq += len(buffer)
        index, buffer = index + 1, []

    for item in iter_items(recipe.sources, run_dir, recipe.limit, progress, crawl_cfg, recipe.follow_symlinks):
        # an item of an already stored shard is only counted: no bytes kept in memory
        buffer.append(None if shards.is_done(run_dir, "ingest", index) else item)
        progress("ingest", 1, recipe.limit)
        if len(buffer) == recipe.shard_size:
            flush()
    if buffer:
        flush()
    progress("ingest", 0, seq)  # the total is known now: completes the bar
    shards.write_json_atomic(run_dir / INGEST_COMPLETE, {"shards": index, "items": seq})
    return index


def _first_new_ids(meta: pa.Table, n: int) -> list[list[str]]:
    """Per shard, the decodable ids seen there for the first time (input order): the only ones a model ever processes."""
    seen: set[str] = set()
    per_shard: list[list[str]] = [[] for _ in range(n)]
    ok = meta.filter(pc.is_null(meta.column("ingest_error")))
    for shard, id_ in zip(ok.column("shard").to_pylist(), ok.column("id").to_pylist()):
        if id_ not in seen:
            seen.add(id_)
            per_shard[shard].append(id_)
    return per_shard


def _rows_with_bytes(run_dir: Path, shard: int, keys: pa.Table) -> pa.Table:
    """`keys` (with an `id` column) plus that shard's stored image bytes for each id, in `keys` order."""
    ingest = shards.read_shard(run_dir, "ingest", shard, ["id", "image_bytes"])
    blobs: dict[str, bytes] = {}
    for id_, blob in zip(ingest.column("id").to_pylist(), ingest.column("image_bytes").to_pylist()):
        if blob is not None:
            blobs.setdefault(id_, blob)
    missing = [i for i in keys.column("id").to_pylist() if i not in blobs]
    if missing:
        raise RuntimeError(f"ingest shard {shard} of {run_dir} lacks the bytes of {missing[:3]}: the run folder is damaged")
    return keys.append_column("image_bytes", pa.array([blobs[i] for i in keys.column("id").to_pylist()], pa.binary()))


class _Models:
    """Loads each stage's model on first use and records what was loaded in RUN/models.json (for provenance).

    With several `devices` (device_workers.py), a stage whose `device` is auto runs on one worker process per device
    instead; with one, it loads on that device here."""

    def __init__(self, recipe: CurateRecipe, run_dir: Path, devices: Sequence[str] = ()):
        self.recipe, self.run_dir, self.loaded, self.devices = recipe, run_dir, {}, list(devices)
        self.load_s: dict[str, float] = {}  # stage -> seconds spent loading its model
        path = run_dir / "models.json"
        self.info = json.loads(path.read_text()) if path.exists() else {}
        self.pool = DevicePool(recipe, run_dir, self.devices) if len(self.devices) > 1 else None

    def _note(self, stage: str, model, started: float, **extra) -> None:
        self.load_s[stage] = time.perf_counter() - started
        self.info[stage] = {"backend": model.backend, "model": model.model_id, "revision": model.revision, **extra}
        shards.write_json_atomic(self.run_dir / "models.json", self.info)

    def _cfg(self, stage: str):
        """The stage's config, moved to the one listed device when `devices` names exactly one."""
        if len(self.devices) == 1 and spreads(self.recipe, stage):
            return getattr(on_device(self.recipe, stage, self.devices[0]), stage)
        return getattr(self.recipe, stage)

    def classifier(self):
        if "classify" not in self.loaded:
            from emocurate.stages.classify import load_classifier

            started = time.perf_counter()
            model = load_classifier(self._cfg("classify"), classifier_emotions(self.run_dir))
            self.loaded["classify"] = model
            self._note("classify", model, started, emotions=list(model.emotions))
        return self.loaded["classify"]

    def captioner(self):
        if "caption" not in self.loaded:
            from emocurate.stages.caption.contract import load_captioner

            started = time.perf_counter()
            model = load_captioner(self._cfg("caption"))
            self.loaded["caption"] = model
            self._note("caption", model, started, prompt=model.prompt_text("{emotion}"))
        return self.loaded["caption"]

    def scorer(self):
        if "clip_filter" not in self.loaded:
            from emocurate.stages.clip_filter import load_scorer

            started = time.perf_counter()
            model = load_scorer(self._cfg("clip_filter"))
            self.loaded["clip_filter"] = model
            self._note("clip_filter", model, started)
        return self.loaded["clip_filter"]

    def on_workers(self, stage: str, todo: dict[int, pa.Table], tick) -> Iterator[tuple[int, pa.Table]]:
        """(shard, result table) per shard of `todo`, computed by the device workers; provenance noted as they report."""
        self.load_s[stage] = 0.0  # workers load in parallel: the longest load counts
        for shard, table, info, load_s in self.pool.run(stage, todo):
            if self.info.get(stage) != info:
                self.info[stage] = info
                shards.write_json_atomic(self.run_dir / "models.json", self.info)
            self.load_s[stage] = max(self.load_s[stage], load_s)
            tick(table.num_rows)
            yield shard, table

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _stage_results(stage: str, run_dir: Path, recipe: CurateRecipe, todo: dict[int, pa.Table], models: _Models,
                   tick) -> Iterator[tuple[int, pa.Table]]:
    """(shard, result table) for each shard of `todo` (shard -> key table), here or on the device workers."""
    if models.pool is not None and spreads(recipe, stage):
        yield from models.on_workers(stage, todo, tick)
        return
    run, model = {"classify": (classify_shard, models.classifier), "caption": (caption_shard, models.captioner),
                  "clip_filter": (clipscore_shard, models.scorer)}[stage]
    for s, keys in sorted(todo.items()):
        rows = _rows_with_bytes(run_dir, s, keys)
        yield s, run(rows, model(), getattr(recipe, stage).batch_size, tick)


def classify_all(run_dir: Path, recipe: CurateRecipe, meta: pa.Table, n: int, models: _Models, progress) -> int:
    todo = {s: pa.table({"id": ids}) for s, ids in enumerate(_first_new_ids(meta, n))
            if ids and not shards.is_done(run_dir, "classify", s)}
    total = sum(t.num_rows for t in todo.values())
    progress("classify", 0, total)
    for s, table in _stage_results("classify", run_dir, recipe, todo, models, lambda k: progress("classify", k)):
        shards.write_shard(run_dir, "classify", s, table)
    return total


def _pending(records: pa.Table, stage: str, key: str, reason: Optional[str] = None) -> dict[int, pa.Table]:
    """Per shard, the unique (id, key) pairs a stage still has to process (each pair in the first shard it appears in)."""
    mask = pc.equal(records.column("dropped_by"), stage)
    if reason is not None:
        mask = pc.and_(mask, pc.equal(records.column("reason"), reason))
    todo = records.filter(mask).select(["shard", "id", key]).to_pylist()
    seen, out = set(), {}
    for row in todo:
        pair = (row["id"], row[key])
        if pair not in seen:
            seen.add(pair)
            out.setdefault(row["shard"], []).append(row)
    return {s: pa.Table.from_pylist(rows).drop_columns(["shard"]) for s, rows in out.items()}


def _merge_into_shard(run_dir: Path, stage: str, shard: int, new: pa.Table, keys: list[str], schema: pa.Schema) -> None:
    """Rewrite a score shard with `new` replacing earlier rows for the same keys (atomic, marker rewritten after)."""
    old = shards.read_shard(run_dir, stage, shard)
    if old is not None and old.num_rows:
        replaced = {tuple(r[k] for k in keys) for r in new.select(keys).to_pylist()}
        keep = [tuple(r[k] for k in keys) not in replaced for r in old.select(keys).to_pylist()]
        new = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())), new.cast(schema)])
    shards.write_shard(run_dir, stage, shard, new.cast(schema))


def caption_all(run_dir: Path, recipe: CurateRecipe, records: pa.Table, models: _Models, progress) -> int:
    todo = _pending(records, "caption", "emotion")
    total = sum(t.num_rows for t in todo.values())
    progress("caption", 0, total)
    for s, table in _stage_results("caption", run_dir, recipe, todo, models, lambda k: progress("caption", k)):
        _merge_into_shard(run_dir, "caption", s, table, ["id", "caption_emotion"], CAPTION_SCHEMA)
    return total


def clipscore_all(run_dir: Path, recipe: CurateRecipe, records: pa.Table, models: _Models, progress) -> int:
    todo = _pending(records, "clip_filter", "caption", NOT_SCORED)
    total = sum(t.num_rows for t in todo.values())
    progress("clip_score", 0, total)
    for s, table in _stage_results("clip_filter", run_dir, recipe, todo, models, lambda k: progress("clip_score", k)):
        _merge_into_shard(run_dir, "clipscore", s, table, ["id", "caption"], CLIPSCORE_SCHEMA)
    return total


# ---------------------------------------------------------------- decisions
def decide_run(run_dir: Path, recipe: CurateRecipe, n: int) -> pa.Table:
    """Records from every stored shard and the recipe's thresholds (no model)."""
    meta = shards.read_stage(run_dir, "ingest", n, META_COLUMNS, INGEST_SCHEMA)
    classify = _read_classify(run_dir, n)
    captions = shards.read_stage(run_dir, "caption", n, schema=CAPTION_SCHEMA)
    scores = shards.read_stage(run_dir, "clipscore", n, schema=CLIPSCORE_SCHEMA)
    return decide(meta, classify, captions, scores, recipe)


def _read_classify(run_dir: Path, n: int) -> pa.Table:
    tables = [t for t in (shards.read_shard(run_dir, "classify", i) for i in range(n)) if t is not None]
    return pa.concat_tables(tables) if tables else classify_schema([]).empty_table()


# ---------------------------------------------------------------- entry points
def build(recipe: CurateRecipe, run_dir: str | Path, progress=None, crawl_cfg=None, publish: bool = True) -> dict:
    """Run (or resume) every stage, write RUN/records.parquet and (unless `publish` is False) RUN/dataset/.

    Returns a summary with, per stage, the items it processed in this call, its seconds and its model-loading seconds."""
    progress = progress or no_progress
    run_dir = Path(run_dir)
    devices = resolve_devices(recipe.devices)  # a device this machine lacks fails here, before any work
    prepare_run(run_dir, recipe)
    stages: dict[str, dict] = {}
    models = _Models(recipe, run_dir, devices)

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        load_s = models.load_s.get("clip_filter" if name == "clip_score" else name, 0.0)
        stages[name] = {"seconds": round(time.perf_counter() - start, 3), "load_s": round(load_s, 3),
                        "items": out if isinstance(out, int) else None}
        return out

    crawl_cfg = crawl_cfg if crawl_cfg is not None else getattr(recipe, "crawl", None)  # a `crawl:` recipe section, if any
    n = timed("ingest", ingest_all, recipe, run_dir, progress, crawl_cfg)
    if n == 0:
        raise ValueError(f"the sources {recipe.sources} gave no items: nothing to curate")
    meta = shards.read_stage(run_dir, "ingest", n, META_COLUMNS)
    stages["ingest"]["items"] = meta.num_rows
    try:
        timed("classify", classify_all, run_dir, recipe, meta, n, models, progress)
        timed("caption", caption_all, run_dir, recipe, decide_run(run_dir, recipe, n), models, progress)
        timed("clip_score", clipscore_all, run_dir, recipe, decide_run(run_dir, recipe, n), models, progress)
    finally:
        models.close()  # ends the device workers, if any
    records = decide_run(run_dir, recipe, n)
    shards.write_parquet_atomic(run_dir / "records.parquet", records)
    dataset, why_not = timed("publish", publish_records, run_dir, recipe, records) if publish else (None, "--no-publish")
    return summarize(records, stages, dataset, why_not)


def refilter(run_dir: str | Path, overrides: list[str], publish: bool = True) -> dict:
    """Re-apply decision keys (thresholds, emotion set, dedup) to the stored scores; no model is loaded or run."""
    run_dir = Path(run_dir)
    check_refilter_overrides(overrides)
    n = n_ingest_shards(run_dir)
    if n is None:
        raise ValueError(f"{run_dir} has no finished ingest: run `emocurate build` first")
    recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    records = decide_run(run_dir, recipe, n)
    shards.write_parquet_atomic(run_dir / "records.parquet", records)
    save_recipe(run_dir, recipe)
    dataset, why_not = publish_records(run_dir, recipe, records) if publish else (None, "--no-publish")
    return summarize(records, {}, dataset, why_not)


def summarize(records: pa.Table, stages: dict, dataset, why_not: Optional[str] = None) -> dict:
    status = records.column("status").to_pylist()
    return {"records": len(status), "kept": status.count("kept"), "dropped": status.count("dropped"),
            "stages": stages, "dataset": str(dataset) if dataset else None, "dataset_not_written": why_not}
