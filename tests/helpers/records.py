"""Stored stage tables for a handful of records, built in code: what decide() reads from a run folder."""

import pyarrow as pa

from emocurate.run.decide import NOT_CAPTIONED, decide
from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, classify_schema
from emocurate.stages.ingest import INGEST_SCHEMA
from emocurate.recipe import CurateRecipe

EMOS = ["amusement", "awe", "excitement", "fear"]


def stored_ingest():
    rows = [("A", None, None), ("B", "fear", None), ("A", None, None), ("C", None, "corrupt: bad"),
            ("D", None, None), ("E", None, None), ("F", "excitement", None)]
    cols = {name: [] for name in INGEST_SCHEMA.names}
    for seq, (id_, label, err) in enumerate(rows):
        vals = dict(seq=seq, shard=seq // 4, id=id_, source="folder:x", source_id=f"{seq}.jpg", label=label, metadata="{}",
                    width=None if err else 8, height=None if err else 8, format="JPEG", original_mode="RGB",
                    ingest_dropped_by="ingest" if err else None, ingest_error=err, image_bytes=None)
        for k in cols:
            cols[k].append(vals[k])
    return pa.table(cols, schema=INGEST_SCHEMA)


def stored_classify():
    probs = {"A": [0.05, 0.9, 0.03, 0.02], "B": [0.4, 0.3, 0.1, 0.2], "D": [0.5, 0.3, 0.1, 0.1],
             "E": [0.1, 0.8, 0.05, 0.05], "F": [0.1, 0.1, 0.7, 0.1]}
    cols = {"id": list(probs)}
    cols.update({f"prob_{e}": [p[i] for p in probs.values()] for i, e in enumerate(EMOS)})
    return pa.table(cols, schema=classify_schema(EMOS))


def stored_captions():
    return pa.table({"id": ["A", "B", "E"], "caption_emotion": ["awe", "fear", "awe"],
                     "caption": ["a vast sky", None, "a small sky"], "caption_error": [None, "TimeoutError: slow", None],
                     "caption_raw": [None, None, None]}, schema=CAPTION_SCHEMA)


def stored_scores():
    return pa.table({"id": ["A", "E"], "caption": ["a vast sky", "a small sky"], "clip_score": [0.3, 0.1],
                     "caption_tokens": [12, 90]}, schema=CLIP_FILTER_SCHEMA)


def small_recipe(**kw):
    kw.setdefault("emotions", ["amusement", "awe", "fear"])
    return CurateRecipe(sources=["demo"], **kw)


def decide_stored(recipe):
    return decide(stored_ingest(), stored_classify(), stored_captions(), stored_scores(), recipe).to_pylist()


SCORE_TOLERANCE = 1e-5
"""Scores computed in other processes (device workers, Ray actors) may differ in the last float32 bits: a reduction's
order depends on the thread count (seen: ~7e-8). Everything else (ids, statuses, reasons, captions) must be equal."""


def assert_same_values(a, b, path: str = "", tol: float = SCORE_TOLERANCE) -> None:
    """`a == b`, except floats, which may differ by `tol` (absolute); nested lists and dicts compared element-wise."""
    if isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= tol or (a != a and b != b), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same_values(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: {len(a)} rows != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_values(x, y, f"{path}[{i}]", tol)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_same_tables(a, b, name: str = "") -> None:
    """Two pyarrow tables with the same schema and the same rows (scores within SCORE_TOLERANCE)."""
    assert a.schema == b.schema, name
    assert_same_values(a.to_pylist(), b.to_pylist(), name)
