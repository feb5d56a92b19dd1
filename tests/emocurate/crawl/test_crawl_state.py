"""Crawl state shards: results on disk as they complete, a torn tail ignored, later results win, bodies read back
(also from older parquet shards), summary counts."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emocurate.crawl.state import ROW_GROUP, SCHEMA, CrawlState, ShardWriter, shard_paths, summary


def row(key, n, status="ok", body=None, sha=None, retryable=False):
    return {
        "key": key, "row": n, "url": key, "status": status, "error": None if status == "ok" else f"{status}: x",
        "http_status": 200, "attempts": 1, "sha256": sha, "body": body, "final_url": None, "retryable": retryable,
        "fetched_at": 0.0,
    }  # fmt: skip


def test_shards_rotate_resume_latest_wins_and_bodies_come_back(tmp_path):
    (tmp_path / ".fetch-000000.parquet.tmp").write_bytes(b"half a shard")  # an older version's interrupted write
    writer = ShardWriter(tmp_path, shard_rows=4)
    assert not list(tmp_path.glob(".*.tmp"))
    n = 9
    for i in range(n):
        writer.add(row(f"u{i}", i, body=f"body{i}".encode(), sha=f"s{i}"))
    writer.add(row("late", n, status="timeout", retryable=True))
    writer.add(row("gone", n + 1, status="http_error"))
    assert writer.commit() == n + 2 and writer.commit() == 0
    writer.close()
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.arrows", "fetch-000001.arrows", "fetch-000002.arrows"]
    state = CrawlState(tmp_path)
    assert [state.body(f"u{i}") for i in (n - 1, 0, 5)] == [f"body{i}".encode() for i in (n - 1, 0, 5)]
    assert state.needs_fetch("late", retry_failed=True) and not state.needs_fetch("late", retry_failed=False)
    assert not state.needs_fetch("gone", retry_failed=True) and not state.needs_fetch("u0", retry_failed=True)
    assert state.needs_fetch("new", retry_failed=False)

    writer = ShardWriter(tmp_path)  # a second run continues the numbering
    writer.add(row("late", n, body=b"now", sha="s0"))  # same bytes as u0: a duplicate in input order
    writer.close()
    assert shard_paths(tmp_path)[-1].name == "fetch-000003.arrows"
    state = CrawlState(tmp_path)
    assert state.rows["late"].status == "ok" and state.body("late") == b"now"
    assert summary(tmp_path) == {"ok": n, "duplicate": 1, "http_error": 1}


def test_every_commit_is_on_disk_and_a_torn_tail_is_ignored(tmp_path):
    writer = ShardWriter(tmp_path)
    for i in range(3):
        writer.add(row(f"k{i}", i, body=b"x" * 1000, sha=f"s{i}"))
        assert writer.commit() == 1  # each result on disk as it completes, the shard still open
        assert sorted(CrawlState(tmp_path).rows) == [f"k{j}" for j in range(i + 1)]
    [shard] = shard_paths(tmp_path)
    with open(shard, "ab") as fh:  # a kill in the middle of the next batch
        fh.write(b"\xff\xff\xff\xff\x10\x00\x00")
    del writer  # killed: never closed

    state = CrawlState(tmp_path)
    assert sorted(state.rows) == ["k0", "k1", "k2"] and state.body("k2") == b"x" * 1000
    writer = ShardWriter(tmp_path)  # the next run never appends to the torn shard
    writer.add(row("k3", 3))
    writer.close()
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.arrows", "fetch-000001.arrows"]
    assert summary(tmp_path) == {"ok": 4}


def test_parquet_shards_of_older_versions_are_still_read(tmp_path):
    rows = [row(f"p{i}", i, body=f"b{i}".encode(), sha=f"s{i}") for i in range(ROW_GROUP + 3)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "fetch-000000.parquet", row_group_size=ROW_GROUP)
    writer = ShardWriter(tmp_path)
    writer.add(row("p0", 0, status="timeout", retryable=True))  # a newer result for p0 wins
    writer.close()
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.parquet", "fetch-000001.arrows"]
    state = CrawlState(tmp_path)
    assert state.body(f"p{ROW_GROUP + 1}") == f"b{ROW_GROUP + 1}".encode() and state.rows["p0"].status == "timeout"


def test_a_failed_commit_keeps_its_rows_and_starts_a_new_shard(tmp_path, monkeypatch):
    writer = ShardWriter(tmp_path)
    writer.add(row("a", 0))
    writer.commit()
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    writer.add(row("b", 1))
    with pytest.raises(OSError, match="No space"):
        writer.commit()
    writer.close()  # the rows of the failed commit are written again, to a fresh shard
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.arrows", "fetch-000001.arrows"]
    assert sorted(CrawlState(tmp_path).rows) == ["a", "b"]
