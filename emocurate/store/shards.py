"""The run folder's shard files: atomic parquet writes (tmp + rename) with a `.done` marker written last.

A shard counts as finished only when its marker exists, so a run killed at any moment resumes without redoing
finished shards and without reading half-written ones. It knows nothing about what the tables contain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

LEGACY_FOLDERS = {"clip_filter": "clipscore"}
"""Shard folders that run folders made before the restructure name differently; such a run keeps using its own."""


def stage_dir(run_dir: Path, folder: str) -> Path:
    """RUN/shards/<folder>, or its legacy name when only that exists (a run folder made by an older version)."""
    path = Path(run_dir) / "shards" / folder
    legacy = LEGACY_FOLDERS.get(folder)
    if legacy is not None and not path.exists() and (Path(run_dir) / "shards" / legacy).exists():
        return Path(run_dir) / "shards" / legacy
    return path


def shard_path(run_dir: Path, stage: str, index: int) -> Path:
    return stage_dir(run_dir, stage) / f"{index:05d}.parquet"


def marker_path(run_dir: Path, stage: str, index: int) -> Path:
    return shard_path(run_dir, stage, index).with_suffix(".done")


def is_done(run_dir: Path, stage: str, index: int) -> bool:
    return marker_path(run_dir, stage, index).exists()


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_shard(run_dir: Path, stage: str, index: int, table: pa.Table, info: Optional[dict] = None) -> None:
    """Write the shard's table, then its marker: the marker's existence means the table is complete."""
    write_parquet_atomic(shard_path(run_dir, stage, index), table)
    write_json_atomic(marker_path(run_dir, stage, index), {"rows": table.num_rows, **(info or {})})


def read_shard(run_dir: Path, stage: str, index: int, columns: Optional[Sequence[str]] = None) -> Optional[pa.Table]:
    """The shard's table if it is finished, else None."""
    if not is_done(run_dir, stage, index):
        return None
    return pq.read_table(shard_path(run_dir, stage, index), columns=list(columns) if columns else None)


def read_stage(run_dir: Path, stage: str, n_shards: int, columns: Optional[Sequence[str]] = None,
               schema: Optional[pa.Schema] = None) -> pa.Table:
    """All finished shards of a stage concatenated in shard order (an empty table with `schema` if none)."""
    tables = [t for t in (read_shard(run_dir, stage, i, columns) for i in range(n_shards)) if t is not None]
    if not tables:
        if schema is None:
            raise ValueError(f"no finished {stage} shards in {run_dir}")
        return schema.empty_table() if not columns else schema.empty_table().select(list(columns))
    return pa.concat_tables(tables, promote_options="default")


def clean_tmp(run_dir: Path) -> int:
    """Remove temporary files left by a killed run; returns how many."""
    removed = 0
    for tmp in Path(run_dir).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
