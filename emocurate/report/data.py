"""The report's data: RUN/records.parquet and the recipe as one compact, column-oriented JSON object (`data.js`).

It decides nothing: the page re-applies the rule to these columns (whatif.js, the twin of emocurate/run/decide.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emocurate.core.emotions import EMOTIONS, POLARITY

OUTCOMES = ("kept", "classify", "caption", "clip_filter", "dedup", "ingest", "fetch")
"""Outcome codes: kept, or the stage that dropped the record (`fetch` = the URL crawler, before ingest)."""
COLUMNS = ("id", "source", "source_id", "dropped_by", "reason", "label", "emotion", "emotion_confidence", "caption",
           "clip_score", "shard", "seq")
LOW_CONFIDENCE = "low_confidence:"
"""decide.py's reason prefix for the one classify drop that `classify.min_confidence` can undo."""


def read_records(run_dir: Path) -> pa.Table:
    path = Path(run_dir) / "records.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `emocurate build` first (the report shows its decided records)")
    table = pq.read_table(path, columns=list(COLUMNS))
    return table.take(pc.sort_indices(table, [("seq", "ascending")]))


def _codes(values: list, names: list[str]) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    return [-1 if v is None else index[v] for v in values]


def _f64(column: pa.ChunkedArray) -> str:
    array = column.to_numpy(zero_copy_only=False).astype("<f8")  # nulls become NaN
    return base64.b64encode(array.tobytes()).decode("ascii")


def _emotion_names(recipe_emotions: list[str], present: list) -> list[str]:
    """The recipe's emotions, then any other emotion the records carry (EmoSet order first)."""
    others = {e for e in present if e is not None} - set(recipe_emotions)
    return list(recipe_emotions) + sorted(others, key=lambda e: (EMOTIONS.index(e) if e in EMOTIONS else len(EMOTIONS), e))


def score_order(records: pa.Table) -> np.ndarray:
    """Indices of the scored records in the CLIP filter's order: score, then id (its tie-break), then input order."""
    scored = np.flatnonzero(records.column("clip_score").is_valid().to_numpy(zero_copy_only=False))
    scores = records.column("clip_score").to_numpy(zero_copy_only=False)[scored]
    ids = np.asarray(records.column("id").to_pylist(), dtype=object)[scored]
    ranks = np.unique(ids, return_inverse=True)[1]  # ids compare as Python strings compare
    return scored[np.lexsort((scored, ranks, scores))]


def gates(dropped_by: list, reasons: list) -> list[int]:
    """1 where the record left before the confidence check (fetch, ingest, dedup, unclassified, emotion outside the
    recipe): no slider can change its outcome. 0 where it reached the check."""
    early = {"fetch", "ingest", "dedup"}
    return [int(d in early or (d == "classify" and not (r or "").startswith(LOW_CONFIDENCE)))
            for d, r in zip(dropped_by, reasons)]


def fetch_statuses(run_dir: Path) -> Optional[dict[str, int]]:
    """Crawl outcome per URL record (`metadata.fetch_status`), for runs with a `urls:` source; None otherwise."""
    import duckdb

    path = (Path(run_dir) / "records.parquet").as_posix().replace("'", "''")
    rows = duckdb.sql(f"""
        SELECT coalesce(json_extract_string(metadata, '$.fetch_status'), '(none)') AS status, count(*) AS n
        FROM read_parquet('{path}') WHERE source LIKE 'urls:%' GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()
    return {status: int(n) for status, n in rows} or None


def report_data(run_dir: Path, records: pa.Table, recipe, status: dict, thumbs: set[int]) -> dict:
    """Everything the page shows, as one JSON-ready dict (`records` from read_records, as columns; `thumbs` = seqs
    with a thumbnail)."""
    col = {name: records.column(name).to_pylist() for name in
           ("source", "source_id", "dropped_by", "reason", "label", "emotion", "caption", "shard", "seq")}
    emotions = _emotion_names(recipe.emotions, list(set(col["emotion"])))
    sources = sorted({s for s in col["source"] if s is not None})
    reason_names = sorted({r for r in col["reason"] if r is not None})
    outcome = _codes([d if d is not None else "kept" for d in col["dropped_by"]], list(OUTCOMES))
    return {
        "format": 1,
        "run": str(Path(run_dir).resolve()),
        "n": records.num_rows,
        "recipe": {"emotions": list(recipe.emotions), "min_confidence": recipe.classify.min_confidence,
                   "drop_fraction": recipe.clip_filter.drop_fraction, "dedup": recipe.dedup,
                   "apply_min_confidence_to_labelled": recipe.apply_min_confidence_to_labelled},
        "outcomes": list(OUTCOMES),
        "emotions": emotions,
        "polarity": {e: POLARITY.get(e) for e in emotions},
        "sources": sources,
        "reasons": reason_names,
        "status": status,
        "fetch": fetch_statuses(run_dir),
        "cols": {
            "emotion": _codes(col["emotion"], emotions),
            "outcome": outcome,
            "gate": gates(col["dropped_by"], col["reason"]),
            "labelled": [int(v is not None) for v in col["label"]],
            "reason": _codes(col["reason"], reason_names),
            "source": _codes(col["source"], sources),
            "source_id": col["source_id"],
            "caption": col["caption"],
            "shard": col["shard"],
            "seq": col["seq"],
            "thumb": [int(s in thumbs) for s in col["seq"]],
            "conf": _f64(records.column("emotion_confidence")),
            "score": _f64(records.column("clip_score")),
        },
        "by_score": score_order(records).tolist(),
    }


# Why column-oriented JSON in a script, not parquet read in the browser: a page opened from disk (file://) may not
# fetch() its sibling files in Chromium, but it may load a <script>; and a parquet reader (JS or wasm) would have to
# ship with every report. Small codes (emotion, outcome, reason, source) are indices into name lists; the two score
# columns are base64 little-endian float64 arrays (NaN = missing): exact to the bit, so the page's "what if" compares
# the very numbers `refilter` compares, at ~11 characters a value.
def write_data_js(data: dict, path: Path) -> Path:
    """`window.EMOREPORT = {...};` (a script, so a page opened from disk can load it); tmp + rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    tmp.write_text(f"window.EMOREPORT = {text};\n", encoding="utf-8")
    tmp.replace(path)
    return path
