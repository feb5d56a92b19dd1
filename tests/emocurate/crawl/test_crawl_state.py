"""Crawl state shards: atomic writes, later results win, bodies read back by row group, summary counts."""

from __future__ import annotations

from emocurate.crawl.state import ROW_GROUP, CrawlState, ShardWriter, shard_paths, summary


def row(key, n, status="ok", body=None, sha=None, retryable=False):
    return {
        "key": key, "row": n, "url": key, "status": status, "error": None if status == "ok" else f"{status}: x",
        "http_status": 200, "attempts": 1, "sha256": sha, "body": body, "final_url": None, "retryable": retryable,
        "fetched_at": 0.0,
    }  # fmt: skip


def test_shards_resume_latest_wins_and_bodies_come_back(tmp_path):
    (tmp_path / ".fetch-000000.parquet.tmp").write_bytes(b"half a shard")  # a write interrupted by a kill
    writer = ShardWriter(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    n = ROW_GROUP * 2 + 5
    for i in range(n):
        writer.add(row(f"u{i}", i, body=f"body{i}".encode(), sha=f"s{i}"))
    writer.add(row("late", n, status="timeout", retryable=True))
    writer.add(row("gone", n + 1, status="http_error"))
    assert writer.flush().name == "fetch-000000.parquet" and writer.flush() is None
    state = CrawlState(tmp_path)
    assert [state.body(f"u{i}") for i in (n - 1, 0, ROW_GROUP + 1)] == [f"body{i}".encode() for i in (n - 1, 0, ROW_GROUP + 1)]
    assert state.needs_fetch("late", retry_failed=True) and not state.needs_fetch("late", retry_failed=False)
    assert not state.needs_fetch("gone", retry_failed=True) and not state.needs_fetch("u0", retry_failed=True)
    assert state.needs_fetch("new", retry_failed=False)

    writer = ShardWriter(tmp_path)  # a second run continues the numbering
    writer.add(row("late", n, body=b"now", sha="s0"))  # same bytes as u0: a duplicate in input order
    assert writer.flush().name == "fetch-000001.parquet"
    state = CrawlState(tmp_path)
    assert state.rows["late"].status == "ok" and state.body("late") == b"now"
    assert summary(tmp_path) == {"ok": n, "duplicate": 1, "http_error": 1}
    assert len(shard_paths(tmp_path)) == 2
