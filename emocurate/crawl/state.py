"""The crawl's memory on disk: one parquet shard per batch of fetch results, written atomically (tmp + rename), so a
shard that exists is complete. Later shards supersede earlier ones for the same key (a retried URL).

Shard columns: key, row, url, status, error, http_status, attempts, sha256, body (bytes, only for ok), final_url,
retryable, fetched_at. It does not fetch or decide anything; `fetch.py` writes it and `sources/urls.py` reads it.
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


class ShardWriter:
    """Collects result rows (thread-safe) and writes them as the next numbered shard on `flush()`."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.state_dir.glob(".fetch-*.tmp"):  # a shard interrupted mid-write; its rows are refetched
            stale.unlink()
        existing = shard_paths(self.state_dir)
        self.next_index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.last_flush = time.monotonic()

    def add(self, row: dict[str, Any]) -> int:
        """Queue one row; returns how many rows wait for the next flush."""
        with self.lock:
            self.rows.append(row)
            return len(self.rows)

    def flush(self) -> Path | None:
        """Write the waiting rows as one shard (tmp file, then rename); None when nothing waited."""
        with self.write_lock:
            with self.lock:
                rows, self.rows = self.rows, []
                self.last_flush = time.monotonic()
            if not rows:
                return None
            path = self.state_dir / f"fetch-{self.next_index:06d}.parquet"
            self.next_index += 1
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                table = pa.Table.from_pylist(rows, schema=SCHEMA)
                pq.write_table(table, tmp, compression="none", row_group_size=ROW_GROUP)  # image bytes do not compress
                os.replace(tmp, path)
            except BaseException:  # keep the rows for the next flush rather than lose them
                with self.lock:
                    self.rows[:0] = rows
                self.next_index -= 1
                raise
            return path


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
    """The latest result per key across all shards in `state_dir`; bodies are read lazily, one row group at a time."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.rows: dict[str, StateRow] = {}
        columns = [f for f in SCHEMA.names if f not in ("body", "final_url", "fetched_at")]
        for path in shard_paths(self.state_dir):
            table = pq.read_table(path, columns=columns).to_pylist()
            for index, rec in enumerate(table):
                key = rec.pop("key")
                self.rows[key] = StateRow(shard=path, index=index, **rec)
        self._bodies: OrderedDict[tuple[Path, int], list[bytes | None]] = OrderedDict()

    def needs_fetch(self, key: str, retry_failed: bool) -> bool:
        """Not done yet, or (with retry_failed) failed for a reason that may pass: timeout, connection, 429, 5xx."""
        known = self.rows.get(key)
        return known is None or (retry_failed and known.status != "ok" and known.retryable)

    def body(self, key: str) -> bytes | None:
        """The stored body of `key` (None unless ok); reads its row group and keeps the last 8 groups cached."""
        known = self.rows[key]
        group = (known.shard, known.index // ROW_GROUP)
        if group not in self._bodies:
            table = pq.ParquetFile(known.shard).read_row_group(group[1], columns=["body"])
            self._bodies[group] = table.column("body").to_pylist()
            while len(self._bodies) > 8:
                self._bodies.popitem(last=False)
        self._bodies.move_to_end(group)
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
