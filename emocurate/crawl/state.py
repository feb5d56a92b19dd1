"""The crawl's memory on disk: each fetch result is appended to a journal (fsync'd, a few results per fsync) as it
completes, so a killed crawl loses only what was in flight; batches are compacted into parquet shards written atomically
(tmp + rename), so a shard that exists is complete. Later shards supersede earlier ones for the same key (a retried URL).

Shard columns: key, row, url, status, error, http_status, attempts, sha256, body (bytes, only for ok), final_url,
retryable, fetched_at. It does not fetch or decide anything; `crawl.py` writes it and `urls.py` reads it.
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

SHARD_GLOB = "fetch-*.parquet"
JOURNAL_GLOB = "journal-*.arrows"  # journal-N holds the results that will become shard fetch-N
REFUSED_BY_SETTINGS = ("blocked_address",)
"""Failures that a changed setting (allow_hosts) lifts: retry_failed refetches them too."""
ROW_GROUP = 32  # rows per parquet row group: a resumed body is read with its group, not its whole shard
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


def shard_paths(state_dir: Path) -> list[Path]:
    return sorted(Path(state_dir).glob(SHARD_GLOB))


def index_of(path: Path) -> int:
    """N of fetch-N.parquet or journal-N.arrows."""
    return int(path.name.split(".")[0].split("-")[1])


def open_journals(state_dir: Path) -> list[Path]:
    """Journals whose shard was not written yet (a journal next to its shard was compacted, then the crawl died)."""
    shards = {index_of(p) for p in shard_paths(state_dir)}
    return [p for p in sorted(Path(state_dir).glob(JOURNAL_GLOB)) if index_of(p) not in shards]


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete results in a journal; a batch cut short by a kill (the tail) is not a result and is skipped."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as fh:
            reader = pa.ipc.open_stream(fh)
            while True:
                rows += reader.read_next_batch().to_pylist()
    except StopIteration:
        pass
    except (pa.ArrowInvalid, OSError, EOFError):
        pass  # a truncated schema or batch: everything before it was read
    return rows


def fsync_path(path: Path) -> None:
    """Make a file's bytes (or a folder's entries) survive a crash of the machine, not only of the process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Collects result rows (thread-safe); `commit()` appends the rows not yet on disk to the journal and fsyncs it,
    `flush()` writes every row since the last shard as the next numbered shard and deletes its journal.

    Opening a writer compacts the journals a killed crawl left into shards, so their results are not fetched again.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.state_dir.glob(".fetch-*.tmp"):  # a shard interrupted mid-write; its journal still holds it
            stale.unlink()
        existing = shard_paths(self.state_dir)
        self.next_index = index_of(existing[-1]) + 1 if existing else 0
        self.rows: list[dict[str, Any]] = []
        self.journaled = 0  # rows[:journaled] are in the journal
        self.journal: tuple[Any, pa.ipc.RecordBatchStreamWriter] | None = None  # (file, stream writer) while open
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.last_flush = time.monotonic()
        pa.RecordBatch.from_pylist([], schema=SCHEMA)  # pyarrow's first conversion imports pandas (~1 s): not mid-crawl
        left_open = open_journals(self.state_dir)
        for journal in sorted(self.state_dir.glob(JOURNAL_GLOB)):
            left = journal in left_open and read_journal(journal)
            if left:
                self.rows = left
                self.flush()
            journal.unlink(missing_ok=True)

    def add(self, row: dict[str, Any]) -> int:
        """Queue one row; returns how many rows wait for the next flush."""
        with self.lock:
            self.rows.append(row)
            return len(self.rows)

    def commit(self) -> int:
        """Append the rows added since the last commit to the journal and fsync it; returns how many were written."""
        with self.write_lock:
            with self.lock:
                new = self.rows[self.journaled :]
                self.journaled = len(self.rows)
            if not new:
                return 0
            try:
                if self.journal is None:
                    path = self.state_dir / f"journal-{self.next_index:06d}.arrows"
                    fh = open(path, "wb")
                    self.journal = (fh, pa.ipc.new_stream(fh, SCHEMA))
                    fsync_path(self.state_dir)
                fh, stream = self.journal
                stream.write_batch(pa.RecordBatch.from_pylist(new, schema=SCHEMA))
                fh.flush()
                os.fsync(fh.fileno())
            except BaseException:
                with self.lock:  # not on disk: the next commit (or the shard) writes them
                    self.journaled -= len(new)
                raise
            return len(new)

    def flush(self) -> Path | None:
        """Write the waiting rows as one shard (tmp file, fsync, rename), then drop its journal; None when nothing waited."""
        with self.write_lock:
            with self.lock:
                rows, self.rows, self.journaled = self.rows, [], 0
                self.last_flush = time.monotonic()
            if not rows:
                return None
            path = self.state_dir / f"fetch-{self.next_index:06d}.parquet"
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                table = pa.Table.from_pylist(rows, schema=SCHEMA)
                pq.write_table(table, tmp, compression="none", row_group_size=ROW_GROUP)  # image bytes do not compress
                fsync_path(tmp)
                os.replace(tmp, path)
                fsync_path(self.state_dir)
            except BaseException:  # keep the rows for the next flush rather than lose them
                with self.lock:
                    self.rows[:0] = rows
                raise
            self.next_index += 1
            self._drop_journal(index_of(path))
            return path

    def _drop_journal(self, index: int) -> None:
        if self.journal is not None:
            self.journal[0].close()
            self.journal = None
        (self.state_dir / f"journal-{index:06d}.arrows").unlink(missing_ok=True)


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
    """The latest result per key across all shards in `state_dir` (and the journal of a crawl running or killed);
    bodies are read lazily, one row group at a time."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.rows: dict[str, StateRow] = {}
        columns = [f for f in SCHEMA.names if f not in ("body", "final_url", "fetched_at")]
        for path in shard_paths(self.state_dir):
            self._add(path, pq.read_table(path, columns=columns).to_pylist())
        for path in open_journals(self.state_dir):
            self._add(path, [{k: r[k] for k in columns} for r in read_journal(path)])
        self._bodies: OrderedDict[tuple[Path, int], list[bytes | None]] = OrderedDict()

    def _add(self, path: Path, records: list[dict[str, Any]]) -> None:
        for index, rec in enumerate(records):
            key = rec.pop("key")
            self.rows[key] = StateRow(shard=path, index=index, **rec)

    def needs_fetch(self, key: str, retry_failed: bool) -> bool:
        """Not done yet, or (with retry_failed) failed for a reason that may pass: timeout, connection, 429, 5xx, an
        unreadable robots.txt, a Crawl-delay over the cap, or an address the guard refused (allow_hosts may now exempt it)."""
        known = self.rows.get(key)
        lifted = known is not None and (known.retryable or known.status in REFUSED_BY_SETTINGS)
        return known is None or (retry_failed and known.status != "ok" and lifted)

    def body(self, key: str) -> bytes | None:
        """The stored body of `key` (None unless ok); reads its row group and keeps the last 8 groups cached."""
        known = self.rows[key]
        journal = known.shard.suffix == ".arrows"  # read whole: a journal holds at most one shard's rows
        group = (known.shard, 0 if journal else known.index // ROW_GROUP)
        if group not in self._bodies:
            if journal:
                self._bodies[group] = [r["body"] for r in read_journal(known.shard)]
            else:
                table = pq.ParquetFile(known.shard).read_row_group(group[1], columns=["body"])
                self._bodies[group] = table.column("body").to_pylist()
            while len(self._bodies) > 8:
                self._bodies.popitem(last=False)
        self._bodies.move_to_end(group)
        return self._bodies[group][known.index if journal else known.index % ROW_GROUP]


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
