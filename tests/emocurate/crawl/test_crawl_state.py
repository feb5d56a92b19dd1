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


def test_journal_survives_a_kill_and_is_compacted_on_the_next_open(tmp_path):
    from emocurate.crawl.state import open_journals, read_journal

    writer = ShardWriter(tmp_path)
    for i in range(3):
        writer.add(row(f"k{i}", i, body=b"x" * 1000, sha=f"s{i}"))
        assert writer.commit() == 1  # each result on disk as it completes
    assert writer.commit() == 0
    [journal] = open_journals(tmp_path)
    assert not shard_paths(tmp_path) and [r["key"] for r in read_journal(journal)] == ["k0", "k1", "k2"]
    assert CrawlState(tmp_path).body("k1") == b"x" * 1000  # a running (or killed) crawl's results are visible

    with open(journal, "ab") as fh:  # a kill in the middle of the next batch leaves a torn tail
        fh.write(b"\xff\xff\xff\xff\x10\x00")
    del writer  # killed: no flush

    writer = ShardWriter(tmp_path)  # the next run compacts the journal into a shard and deletes it
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.parquet"] and not list(tmp_path.glob("journal-*"))
    assert sorted(CrawlState(tmp_path).rows) == ["k0", "k1", "k2"]

    writer.add(row("k3", 3))
    writer.commit()
    writer.flush()  # a flush writes the shard, then drops its journal
    assert [p.name for p in shard_paths(tmp_path)] == ["fetch-000000.parquet", "fetch-000001.parquet"]
    assert not list(tmp_path.glob("journal-*"))


def test_a_journal_next_to_its_shard_was_already_compacted(tmp_path):
    writer = ShardWriter(tmp_path)
    writer.add(row("a", 0, body=b"a", sha="sa"))
    writer.commit()
    journal = next(tmp_path.glob("journal-*"))
    saved = journal.read_bytes()
    writer.flush()
    journal.write_bytes(saved)  # killed between the shard's rename and the journal's deletion
    ShardWriter(tmp_path)
    assert len(shard_paths(tmp_path)) == 1 and not list(tmp_path.glob("journal-*"))
    assert summary(tmp_path) == {"ok": 1}
