import pyarrow as pa
import pytest

from emocurate.run.decide import NOT_CAPTIONED, decide
from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, classify_schema
from emocurate.stages.ingest import INGEST_SCHEMA
from emocurate.recipe import CurateRecipe
from tests.helpers.records import _captions, _classify, _decide, _ingest, _recipe, _scores

EMOS = ["amusement", "awe", "excitement", "fear"]


def test_every_decision_from_stored_scores():
    recipe = _recipe()
    recipe.clip_filter.drop_fraction = 0.5
    rows = _decide(recipe)
    assert [r["seq"] for r in rows] == list(range(7))
    got = [(r["status"], r["dropped_by"], (r["reason"] or "").split(":")[0]) for r in rows]
    assert got == [
        ("kept", None, ""),
        ("dropped", "caption", "caption_error"),
        ("dropped", "dedup", "duplicate"),
        ("dropped", "ingest", "corrupt"),
        ("dropped", "classify", "low_confidence"),
        ("dropped", "clip_filter", "low_clip_score"),
        ("dropped", "classify", "emotion_not_in_recipe"),
    ]
    a, b, dup, _, d, e, f = rows
    assert a["emotion"] == "awe" and a["emotion_confidence"] == pytest.approx(0.9) and a["caption"] == "a vast sky"
    assert a["caption_tokens"] == 12 and a["caption_truncated"] is False and e["caption_truncated"] is True
    assert a["emotion_probs"]["awe"] == pytest.approx(0.9)
    assert b["emotion"] == "fear" and b["predicted_emotion"] == "amusement"  # a known label wins; scores stored
    assert b["emotion_confidence"] == pytest.approx(0.2) and "retried on the next build" in b["reason"]
    assert dup["reason"] == "duplicate: same sha256 as folder:x:0.jpg" and dup["emotion"] == "awe"
    assert d["emotion"] == "amusement" and d["reason"] == "low_confidence: 0.500 < min_confidence 0.75"
    assert f["reason"] == "emotion_not_in_recipe: label 'excitement'"


def test_new_thresholds_change_decisions_only():
    recipe = _recipe(dedup=False, apply_min_confidence_to_labelled=True)
    recipe.classify.min_confidence = 0.45
    recipe.clip_filter.drop_fraction = 0.5
    rows = _decide(recipe)
    by_seq = {r["seq"]: r for r in rows}
    assert by_seq[1]["dropped_by"] == "classify"  # labelled item now held to min_confidence
    assert by_seq[2]["status"] == "kept" and by_seq[2]["caption"] == "a vast sky"  # no dedup: same scores reused
    assert by_seq[4]["dropped_by"] == "caption" and by_seq[4]["reason"] == NOT_CAPTIONED  # newly eligible, never captioned
    assert by_seq[5]["dropped_by"] == "clip_filter"
    assert [r["clip_score"] for r in rows] == [r["clip_score"] for r in _decide(_recipe())]  # scores untouched


def test_no_scores_yet():
    empty = decide(_ingest(), classify_schema([]).empty_table(), CAPTION_SCHEMA.empty_table(),
                   CLIP_FILTER_SCHEMA.empty_table(), _recipe()).to_pylist()
    assert {r["dropped_by"] for r in empty} == {"classify", "dedup", "ingest"}
    assert all(r["status"] == "dropped" for r in empty)
