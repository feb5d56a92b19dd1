"""What each model stage still has to do in a run folder, and how its results merge into the stored shards.

Pure functions of the stored tables: no model, no executor. The driver calls them before and after each stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from emocurate.run.decide import NOT_DONE
from emocurate.stages.table import Stage
from emocurate.store import shards


def first_new_ids(meta: pa.Table, n: int) -> list[list[str]]:
    """Per shard, the decodable ids seen there for the first time (input order): the only ones a model ever processes."""
    seen: set[str] = set()
    per_shard: list[list[str]] = [[] for _ in range(n)]
    ok = meta.filter(pc.is_null(meta.column("ingest_error")))
    for shard, id_ in zip(ok.column("shard").to_pylist(), ok.column("id").to_pylist()):
        if id_ not in seen:
            seen.add(id_)
            per_shard[shard].append(id_)
    return per_shard


def pending(records: pa.Table, stage: str, key: str, reason: Optional[str] = None) -> dict[int, pa.Table]:
    """Per shard, the unique (id, key) pairs `stage` dropped (with `reason`, if given): each pair in the first shard it
    appears in."""
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


def stage_todo(stage: Stage, run_dir: Path, meta: pa.Table, records: pa.Table, n: int) -> dict[int, pa.Table]:
    """shard -> key table for every shard `stage` still has to process.

    An image-only stage (classify) sees each decodable id once, in a shard whose marker is missing. A stage with an
    input column sees the records it dropped as not yet processed (and, with `retry_failures`, those it failed on)."""
    if stage.input is None:
        return {s: pa.table({"id": ids}) for s, ids in enumerate(first_new_ids(meta, n))
                if ids and not shards.is_done(run_dir, stage.folder, s)}
    return pending(records, stage.name, stage.input, None if stage.retry_failures else NOT_DONE[stage.name])


def merge_into_shard(run_dir: Path, stage: Stage, shard: int, new: pa.Table) -> None:
    """Write a result shard, replacing stored rows with the same keys (atomic; the marker is rewritten after)."""
    schema = stage.schema or new.schema
    old = shards.read_shard(run_dir, stage.folder, shard)
    if old is not None and old.num_rows:
        keys = list(stage.keys)
        replaced = {tuple(r[k] for k in keys) for r in new.select(keys).to_pylist()}
        keep = [tuple(r[k] for k in keys) not in replaced for r in old.select(keys).to_pylist()]
        new = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())).cast(schema), new.cast(schema)])
    shards.write_shard(run_dir, stage.folder, shard, new.cast(schema))
