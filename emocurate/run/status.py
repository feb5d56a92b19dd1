"""`emocurate status`: a duckdb view over RUN/records.parquet -> counts per stage x emotion, drops and errors by reason.

Read-only; the same numbers feed the dataset card's "counts after each stage" table. While a build runs (or after one
was interrupted) there is no records.parquet yet: the records are then decided from the finished shards ("live"), and
those a stage has not processed yet are 'pending' at that stage, not dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from emocurate.stages.table import MODEL_STAGES

STAGE_ORDER = ("ingest", "dedup") + tuple(stage.name for stage in MODEL_STAGES)
"""A record dropped by `fetch` (the URL crawler) counts as dropped at ingest."""


def _connect(run_dir: Path):
    """A duckdb connection with a `records` view, and whether it is live (decided from the finished shards of a build
    that is still running or was interrupted before writing records.parquet)."""
    import duckdb

    con = duckdb.connect()
    path = run_dir / "records.parquet"
    if path.exists():
        con.execute(f"CREATE VIEW records AS SELECT * FROM read_parquet('{path.as_posix()}')")
        return con, False
    live = _live_records(run_dir)
    if live is None:
        raise FileNotFoundError(f"{path} not found and no finished shard in {run_dir}: run `emocurate build` first")
    con.register("records", live)
    return con, True


def _live_records(run_dir: Path):
    from emocurate.recipe import load_recipe
    from emocurate.run.decide import decide_run
    from emocurate.store.manifest import n_ingest_shards

    done = sorted(int(p.stem) for p in (run_dir / "shards" / "ingest").glob("*.done")) if (run_dir / "shards").exists() else []
    if not done or not (run_dir / "recipe.yaml").exists():
        return None
    n = n_ingest_shards(run_dir) or done[-1] + 1
    return mark_pending(decide_run(run_dir, load_recipe(run_dir / "recipe.yaml"), n))


def mark_pending(records):
    """Records of a live run: those dropped only because a stage has not reached them yet get status 'pending'
    (`dropped_by` keeps the stage they wait for)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from emocurate.run.decide import NOT_CAPTIONED, NOT_CLASSIFIED, NOT_SCORED

    waiting = pc.fill_null(pc.is_in(records.column("reason"), pa.array([NOT_CLASSIFIED, NOT_CAPTIONED, NOT_SCORED])), False)
    status = pc.if_else(waiting, pa.scalar("pending"), records.column("status"))
    return records.set_column(records.schema.get_field_index("status"), "status", status)


def _rows(con, query: str) -> list[dict]:
    return con.sql(query).to_arrow_table().to_pylist()


def stage_counts(con, emotions: Optional[Sequence[str]] = None) -> dict[str, dict[str, int]]:
    """stage -> emotion -> how many records remain after that stage (emotion '(none)' when it is unknown)."""
    counts: dict[str, dict[str, int]] = {}
    gone: list[str] = []
    for stage in STAGE_ORDER:
        gone.append(stage)
        if stage == "ingest":
            gone.append("fetch")
        placeholders = ", ".join(f"'{s}'" for s in gone)
        rows = _rows(con, f"""
            SELECT coalesce(emotion, '(none)') AS emotion, count(*) AS n FROM records
            WHERE dropped_by IS NULL OR dropped_by NOT IN ({placeholders}) GROUP BY 1 ORDER BY 1""")
        per = {e: 0 for e in (emotions or [])}
        per.update({r["emotion"]: int(r["n"]) for r in rows})
        counts[stage] = per
    return counts


def stage_counts_of(run_dir: str | Path, emotions: Optional[Sequence[str]] = None) -> dict[str, dict[str, int]]:
    return stage_counts(_connect(Path(run_dir))[0], emotions)


def run_status(run_dir: str | Path, emotions: Optional[Sequence[str]] = None) -> dict:
    """Everything `emocurate status` shows, as plain data."""
    con, live = _connect(Path(run_dir))
    totals = _rows(con, "SELECT status, count(*) AS n FROM records GROUP BY 1 ORDER BY 1")
    dropped = _rows(con, """
        SELECT dropped_by AS stage, coalesce(emotion, '(none)') AS emotion, count(*) AS n FROM records
        WHERE status = 'dropped' GROUP BY 1, 2 ORDER BY 1, 2""")
    # reasons grouped by their code, the text before the first ':' ('corrupt: OSError: ...' -> 'corrupt')
    reasons = _rows(con, """
        SELECT dropped_by AS stage, split_part(reason, ':', 1) AS reason,
               count(*) AS n, min(source || ':' || source_id) AS example
        FROM records WHERE status = 'dropped' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""")
    pending = {r["stage"]: int(r["n"]) for r in _rows(con, """
        SELECT dropped_by AS stage, count(*) AS n FROM records WHERE status = 'pending' GROUP BY 1""")}
    return {
        "run": str(run_dir),
        "live": live,
        "records": sum(int(r["n"]) for r in totals),
        "status": {r["status"]: int(r["n"]) for r in totals},
        "pending_at_stage": {stage: pending[stage] for stage in STAGE_ORDER if stage in pending},
        "remaining_after_stage": stage_counts(con, emotions),
        "dropped_by_stage": [{**r, "n": int(r["n"])} for r in dropped],
        "reasons": [{**r, "n": int(r["n"])} for r in reasons],
    }
