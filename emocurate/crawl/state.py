"""The crawl's memory on disk: numbered shards of fetch results. Each result is appended to the open shard (an Arrow
IPC stream, fsync'd; results that finish during one fsync share the next) as it completes, so a killed crawl refetches
only what was in flight; a batch cut short by the kill is ignored on reading. Later shards supersede earlier ones for
the same key (a retried URL). Shards of older versions (parquet, written whole) are still read.

Shard columns: key, row, url, status, error, http_status, attempts, sha256, body (bytes, only for ok), final_url,
retryable, fetched_at. It does not fetch or decide anything; background.py writes it and sources/urls.py reads it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_SUFFIXES = (".arrows", ".parquet")  # fetch-N.arrows: appended per result; fetch-N.parquet: older versions
REFUSED_BY_SETTINGS = ("blocked_address",)
"""Failures that a changed setting (allow_hosts) lifts: retry_failed refetches them too."""
ROW_GROUP = 32  # rows per parquet row group in older shards: a resumed body is read with its group
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("row", pa.int64()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("http_status", pa.int32()),
        ("attempts", pa.int32()),
        ("sha256", pa.string()),
        ("body", pa.binary()),
        ("final_url", pa.string()),
        ("retryable", pa.bool_()),
        ("fetched_at", pa.float64()),
    ]
)


def index_of(path: Path) -> int:
    """N of fetch-N.arrows or fetch-N.parquet."""
    return int(path.name.split(".")[0].split("-")[1])


def shard_paths(state_dir: Path) -> list[Path]:
    """Every shard, oldest first."""
    paths = [p for p in Path(state_dir).glob("fetch-*") if p.suffix in SHARD_SUFFIXES]
    return sorted(paths, key=index_of)


def read_batches(path: Path) -> list[pa.RecordBatch]:
    """The complete batches of a shard stream, memory-mapped (bodies are not copied); a batch cut short by a kill, at
    the end, is skipped."""
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
        while True:
            batches.append(reader.read_next_batch())
    except StopIteration:
        pass
    except (pa.ArrowInvalid, OSError, EOFError):
        pass  # a truncated schema or batch: everything before it was read
    return batches


def fsync_path(path: Path) -> None:
    """Make a folder's entries survive a crash of the machine, not only of the process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Collects result rows (thread-safe); `commit()` appends the rows not yet on disk to the open shard and fsyncs it,
    starting the next shard once one holds `shard_rows` rows; `close()` commits and closes the open shard.

    A new writer never appends to an existing shard (one a killed crawl left may end in a torn batch): it starts the
    next number."""

    def __init__(self, state_dir: Path, shard_rows: int = 256):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.shard_rows = shard_rows
        for stale in self.state_dir.glob(".fetch-*.tmp"):  # an older version's shard interrupted mid-write
            stale.unlink()
        existing = shard_paths(self.state_dir)
        self.next_index = index_of(existing[-1]) + 1 if existing else 0
        self.rows: list[dict[str, Any]] = []  # added, not yet on disk
        self.shard: tuple[Any, pa.ipc.RecordBatchStreamWriter] | None = None  # (file, stream) while one is open
        self.in_shard = 0  # rows in the open shard
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        pa.RecordBatch.from_pylist([], schema=SCHEMA)  # pyarrow's first conversion imports pandas (~1 s): not mid-crawl

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row for the next commit."""
        with self.lock:
            self.rows.append(row)

    def commit(self) -> int:
        """Append the waiting rows to the open shard (opening the next one when needed) and fsync it; returns how many
        were written. On an error the rows stay queued for the next commit."""
        with self.write_lock:
            with self.lock:
                rows, self.rows = self.rows, []
            written = 0
            try:
                while rows:
                    if self.shard is None:
                        self._open()
                    take = rows[: self.shard_rows - self.in_shard]
                    fh, stream = self.shard
                    stream.write_batch(pa.RecordBatch.from_pylist(take, schema=SCHEMA))
                    fh.flush()
                    os.fsync(fh.fileno())
                    rows = rows[len(take) :]
                    written += len(take)
                    self.in_shard += len(take)
                    if self.in_shard >= self.shard_rows:
                        self._close()
            except BaseException:
                with self.lock:
                    self.rows[:0] = rows
                if self.shard is not None:  # a batch may be half written: later ones would be unreadable after it
                    self.shard[0].close()
                    self.shard = None
                raise
            return written

    def close(self) -> None:
        """Commit what waits and close the open shard (the next commit starts a new one)."""
        self.commit()
        with self.write_lock:
            self._close()

    def _open(self) -> None:
        path = self.state_dir / f"fetch-{self.next_index:06d}.arrows"
        fh = open(path, "xb")  # never an existing shard
        self.shard, self.in_shard = (fh, pa.ipc.new_stream(fh, SCHEMA)), 0
        self.next_index += 1
        fsync_path(self.state_dir)  # the new file's name is durable too

    def _close(self) -> None:
        if self.shard is not None:
            fh, stream = self.shard
            stream.close()  # the end-of-stream marker
            fh.close()
            self.shard = None


@dataclass(frozen=True)
class StateRow:
    """What the state knows about one key; the body stays on disk until `CrawlState.body` reads it."""

    row: int
    url: str
    status: str
    error: str | None
    http_status: int | None
    attempts: int
    sha256: str | None
    retryable: bool
    shard: Path
    index: int


class CrawlState:
    """The latest result per key across all shards in `state_dir` (also those a running or killed crawl is writing);
    bodies are read lazily: a memory-mapped stream shard, or an older parquet shard one row group at a time."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.rows: dict[str, StateRow] = {}
        columns = [f for f in SCHEMA.names if f not in ("body", "final_url", "fetched_at")]
        for path in shard_paths(self.state_dir):
            if path.suffix == ".parquet":
                records = pq.read_table(path, columns=columns).to_pylist()
            else:
                batches = read_batches(path)
                records = pa.Table.from_batches(batches, SCHEMA).select(columns).to_pylist() if batches else []
            for index, rec in enumerate(records):
                key = rec.pop("key")
                self.rows[key] = StateRow(shard=path, index=index, **rec)
        self._bodies: OrderedDict[tuple[Path, int], pa.ChunkedArray | list[bytes | None]] = OrderedDict()

    def needs_fetch(self, key: str, retry_failed: bool) -> bool:
        """Not done yet, or (with retry_failed) failed for a reason that may pass: timeout, connection, 429, 5xx, an
        unreadable robots.txt, a Crawl-delay over the cap, or an address the guard refused (allow_hosts may now exempt it)."""
        known = self.rows.get(key)
        lifted = known is not None and (known.retryable or known.status in REFUSED_BY_SETTINGS)
        return known is None or (retry_failed and known.status != "ok" and lifted)

    def body(self, key: str) -> bytes | None:
        """The stored body of `key` (None unless ok); keeps the last 8 shards (or parquet row groups) open."""
        known = self.rows[key]
        stream = known.shard.suffix == ".arrows"
        group = (known.shard, 0 if stream else known.index // ROW_GROUP)
        if group not in self._bodies:
            if stream:  # memory-mapped: only the pages of bodies read are touched
                self._bodies[group] = pa.Table.from_batches(read_batches(known.shard), SCHEMA).column("body")
            else:
                table = pq.ParquetFile(known.shard).read_row_group(group[1], columns=["body"])
                self._bodies[group] = table.column("body").to_pylist()
            while len(self._bodies) > 8:
                self._bodies.popitem(last=False)
        self._bodies.move_to_end(group)
        if stream:
            return self._bodies[group][known.index].as_py()
        return self._bodies[group][known.index % ROW_GROUP]


def summary(state_dir: str | Path) -> dict[str, int]:
    """Counts by status of the latest result per URL; a later copy (input order) of an ok body counts as `duplicate`."""
    state = CrawlState(Path(state_dir))
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for rec in sorted(state.rows.values(), key=lambda r: r.row):
        status = rec.status
        if status == "ok":
            status = "duplicate" if rec.sha256 in seen else "ok"
            seen.add(rec.sha256)
        counts[status] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def record_run(state_dir: Path, settings: dict[str, Any]) -> None:
    """Append this run's crawl settings (ignore_robots, allow_hosts, user_agent, ...) to `runs.jsonl` for the card."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(state_dir) / "runs.jsonl", "a") as fh:
        fh.write(json.dumps({"started_at": time.time(), **settings}, sort_keys=True) + "\n")


def runs(state_dir: str | Path) -> list[dict[str, Any]]:
    """Every recorded run's settings, oldest first; e.g. `any(r['ignore_robots'] for r in runs(d))` for the card."""
    path = Path(state_dir) / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
