"""The page's "what if" (whatif.js, in Chromium) against decide.py on the same stored scores: every record, many thresholds.

The synthetic run has what makes the rule subtle: score ties (broken by id), confidences exactly at a threshold and
float32 values next to float64 thresholds, labelled records (with and without apply_min_confidence_to_labelled), a
label the classifier does not score, duplicates, unclassified ids, caption errors, missing captions and scores.
"""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emocurate.recipe import CurateRecipe
from emocurate.report.data import OUTCOMES
from emocurate.report.site import write_report
from emocurate.run.decide import NOT_CAPTIONED, NOT_SCORED, decide
from emocurate.run.folder import save_recipe
from emocurate.stages.ingest import INGEST_SCHEMA
from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, classify_schema

CLASSIFIER = ["amusement", "awe", "contentment", "fear", "sadness"]
RECIPE_EMOTIONS = ["amusement", "awe", "anger", "fear", "sadness"]  # contentment scored but not kept; anger kept, not scored
GRID = [(0.0, 0.0), (0.3, 0.2), (0.25, 0.5), (0.5, 0.9), (0.2, 0.33), (1.0, 0.2), (0.31, 0.05), (0.29999, 0.2)]


def _tables(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    uniq = [f"{seed}-{k:04d}" for k in range(330)]
    ids = [uniq[k] for k in range(330)] + [uniq[int(k)] for k in rng.integers(0, 330, n - 330)]  # duplicates
    rng.shuffle(ids)
    labels = rng.choice(["amusement", "fear", "anger", "disgust", "contentment"], n)
    ingest = {name: [] for name in INGEST_SCHEMA.names}
    for seq, id_ in enumerate(ids):
        failed = rng.random() < 0.04
        row = dict(seq=seq, shard=seq // 64, id=id_, source="folder:x", source_id=f"img{seq}.jpg",
                   label=str(labels[seq]) if rng.random() < 0.15 else None, metadata="{}", width=8, height=8,
                   format="JPEG", original_mode="RGB", ingest_dropped_by="ingest" if failed else None,
                   ingest_error="corrupt: bad" if failed else None, image_bytes=None)
        for key in ingest:
            ingest[key].append(row[key])
    classified = [i for i in uniq if rng.random() < 0.95]
    probs = rng.random((len(classified), len(CLASSIFIER))).astype(np.float32) * np.float32(0.2)
    special = np.array([0.25, 0.3, 0.5, 0.29999, 0.31, 0.2, 0.9], np.float32)  # float32(0.3) != 0.3 in float64
    for row in range(len(probs)):
        probs[row, rng.integers(0, len(CLASSIFIER))] = special[rng.integers(0, len(special))] if rng.random() < 0.5 \
            else np.float32(rng.uniform(0.2, 0.6))
    classify = pa.table({"id": classified, **{f"prob_{e}": probs[:, k] for k, e in enumerate(CLASSIFIER)}},
                        schema=classify_schema(CLASSIFIER))
    cap_rows, score_rows = [], []
    for id_ in uniq:
        for emotion in CLASSIFIER + ["anger"]:
            u = rng.random()
            if u < 0.85:
                caption = f"a picture {id_} of {emotion}"
                cap_rows.append((id_, emotion, caption, None))
                if rng.random() < 0.92:
                    score = float(np.float32(round(float(rng.uniform(0.1, 0.3)), 2)))  # 2 decimals: many ties
                    score_rows.append((id_, caption, score, 12))
            elif u < 0.9:
                cap_rows.append((id_, emotion, None, "TimeoutError: slow"))
    captions = pa.table({"id": [r[0] for r in cap_rows], "caption_emotion": [r[1] for r in cap_rows],
                         "caption": [r[2] for r in cap_rows], "caption_error": [r[3] for r in cap_rows],
                         "caption_raw": [None] * len(cap_rows)}, schema=CAPTION_SCHEMA)
    scores = pa.table({"id": [r[0] for r in score_rows], "caption": [r[1] for r in score_rows],
                       "clip_score": [r[2] for r in score_rows], "caption_tokens": [r[3] for r in score_rows]},
                      schema=CLIP_FILTER_SCHEMA)
    return pa.table(ingest, schema=INGEST_SCHEMA), classify, captions, scores


def _fraction_below_an_integer(run) -> float:
    """A drop fraction f where f * n lands just under an integer for some emotion's CLIP pool of n records (0.29 * 100
    is 28.999999999999996, (15 / 26) * 26 is 14.999999999999998): the cut's `+ 1e-9` decides it."""
    records = pq.read_table(run / "records.parquet").to_pylist()
    sizes = {sum(1 for r in records if r["emotion"] == e and r["clip_score"] is not None
                 and r["dropped_by"] in (None, "clip_filter")) for e in RECIPE_EMOTIONS}
    candidates = sorted({round(k / 1000, 3) for k in range(1, 1000)} | {k / n for n in sizes for k in range(1, n)})
    for f in candidates:
        if any(math.floor(f * n) != math.floor(f * n + 1e-9) for n in sizes):
            return f
    raise AssertionError(f"no such fraction for pools of {sizes}")


def _recipe(min_confidence: float, drop_fraction: float, labelled: bool, dedup: bool) -> CurateRecipe:
    recipe = CurateRecipe(sources=["demo"], emotions=RECIPE_EMOTIONS, apply_min_confidence_to_labelled=labelled,
                          dedup=dedup)
    recipe.classify.min_confidence = min_confidence
    recipe.clip_filter.drop_fraction = drop_fraction
    return recipe


@pytest.mark.parametrize("seed,labelled,dedup", [(0, False, True), (1, True, True), (2, False, False)])
def test_whatif_twin_gives_every_record_the_refilter_outcome(tmp_path, page, seed, labelled, dedup):
    tables = _tables(seed)
    run = tmp_path / "run"
    run.mkdir()
    start = _recipe(0.3, 0.2, labelled, dedup)
    pq.write_table(decide(*tables, start), run / "records.parquet")
    save_recipe(run, start)
    write_report(run, thumbnails=False)
    view = page.open(run / "report" / "index.html")
    for min_confidence, drop_fraction in GRID + [(0.3, _fraction_below_an_integer(run))]:
        want = decide(*tables, _recipe(min_confidence, drop_fraction, labelled, dedup))
        got = view.evaluate("([t, f]) => { const r = window.emoReport.whatIf(t, f); "
                            "return [Array.from(r.outcome), Array.from(r.pending)]; }", [min_confidence, drop_fraction])
        expected = [d or "kept" for d in want.column("dropped_by").to_pylist()]
        assert [OUTCOMES[o] for o in got[0]] == expected, (min_confidence, drop_fraction)
        waiting = [int(r in (NOT_CAPTIONED, NOT_SCORED) or (r or "").startswith("caption_error"))
                   for r in want.column("reason").to_pylist()]
        assert got[1] == waiting, (min_confidence, drop_fraction)
    # the grid moves records in both directions, at every stage the sliders reach
    outcomes = {OUTCOMES[o] for o in view.evaluate("Array.from(window.emoReport.whatIf(0.5, 0.9).outcome)")}
    assert {"kept", "classify", "caption", "clip_filter"} <= outcomes
    assert page.errors == [] and page.outside == []
