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


class DamagedShard(ValueError):
    """A shard whose marker exists but whose file is missing, truncated or unreadable (disk full, a bad copy)."""


def read_shard(run_dir: Path, stage: str, index: int, columns: Optional[Sequence[str]] = None) -> Optional[pa.Table]:
    """The shard's table if it is finished, else None; DamagedShard when its file cannot be read."""
    if not is_done(run_dir, stage, index):
        return None
    path = shard_path(run_dir, stage, index)
    try:
        return pq.read_table(path, columns=list(columns) if columns else None)
    except (OSError, pa.ArrowException) as err:
        raise DamagedShard(f"{path} is damaged ({type(err).__name__}: {err}): run `emocurate build` on this run folder "
                           "again to redo it") from None


def damaged(run_dir: Path, stage: str) -> list[Path]:
    """The finished shards of `stage` whose file is missing, unreadable or holds fewer rows than its marker says."""
    out = []
    folder = stage_dir(run_dir, stage)
    for marker in sorted(folder.glob("*.done")) if folder.is_dir() else []:
        path = marker.with_suffix(".parquet")
        try:
            rows = pq.read_metadata(path).num_rows
            expected = json.loads(marker.read_text() or "{}").get("rows", rows)
            if rows != expected:
                raise ValueError(f"{rows} rows, the marker says {expected}")
        except (OSError, ValueError, pa.ArrowException):
            out.append(path)
    return out


def forget(run_dir: Path, stage: str, path: Path) -> None:
    """Remove a shard and its marker, so the next run of its stage redoes it."""
    path.with_suffix(".done").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


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
    """Remove temporary files left by a killed run (in RUN and RUN/shards only); returns how many. Call it only while
    holding the run's lock (emocurate/run/lock.py): then no live process is writing them."""
    run_dir = Path(run_dir)
    removed = 0
    for tmp in [*run_dir.glob(".*.tmp"), *(run_dir / "shards").rglob(".*.tmp")]:
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
