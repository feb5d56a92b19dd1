import pyarrow as pa
import pytest

from emocurate.run.decide import NOT_CAPTIONED, decide
from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, classify_schema
from emocurate.stages.ingest import INGEST_SCHEMA
from emocurate.recipe import CurateRecipe
from tests.helpers.records import stored_captions, stored_classify, decide_stored, stored_ingest, small_recipe, stored_scores

EMOS = ["amusement", "awe", "excitement", "fear"]


def test_every_decision_from_stored_scores():
    recipe = small_recipe()
    recipe.clip_filter.drop_fraction = 0.5
    rows = decide_stored(recipe)
    assert [r["seq"] for r in rows] == list(range(7))
    got = [(r["status"], r["dropped_by"], (r["reason"] or "").split(":")[0]) for r in rows]
    assert got == [
        ("kept", None, ""),
        ("dropped", "caption", "caption_error"),
        ("dropped", "dedup", "duplicate"),
        ("dropped", "ingest", "corrupt"),
        ("dropped", "classify", "low_confidence"),
        ("dropped", "clip_filter", "low_clip_score"),
        ("dropped", "classify", "emotion_not_kept"),
    ]
    a, b, dup, _, d, e, f = rows
    assert a["emotion"] == "awe" and a["emotion_confidence"] == pytest.approx(0.9) and a["caption"] == "a vast sky"
    assert a["caption_tokens"] == 12 and a["caption_truncated"] is False and e["caption_truncated"] is True
    assert a["emotion_probs"]["awe"] == pytest.approx(0.9)
    assert b["emotion"] == "fear" and b["predicted_emotion"] == "amusement"  # a known label wins; scores stored
    assert b["emotion_confidence"] == pytest.approx(0.2) and "retried on the next build" in b["reason"]
    assert dup["reason"] == "duplicate: same sha256 as folder:x:0.jpg" and dup["emotion"] == "awe"
    assert d["emotion"] == "amusement" and d["reason"] == "low_confidence: 0.500 < min_confidence 0.75"
    assert f["reason"] == "emotion_not_kept: excitement (label)"


def test_new_thresholds_change_decisions_only():
    recipe = small_recipe(dedup=False, apply_min_confidence_to_labelled=True)
    recipe.classify.min_confidence = 0.45
    recipe.clip_filter.drop_fraction = 0.5
    rows = decide_stored(recipe)
    by_seq = {r["seq"]: r for r in rows}
    assert by_seq[1]["dropped_by"] == "classify"  # labelled item now held to min_confidence
    assert by_seq[2]["status"] == "kept" and by_seq[2]["caption"] == "a vast sky"  # no dedup: same scores reused
    assert by_seq[4]["dropped_by"] == "caption" and by_seq[4]["reason"] == NOT_CAPTIONED  # newly eligible, never captioned
    assert by_seq[5]["dropped_by"] == "clip_filter"
    assert [r["clip_score"] for r in rows] == [r["clip_score"] for r in decide_stored(small_recipe())]  # scores untouched


def test_no_scores_yet():
    empty = decide(stored_ingest(), classify_schema([]).empty_table(), CAPTION_SCHEMA.empty_table(),
                   CLIP_FILTER_SCHEMA.empty_table(), small_recipe()).to_pylist()
    assert {r["dropped_by"] for r in empty} == {"classify", "dedup", "ingest"}
    assert all(r["status"] == "dropped" for r in empty)


def test_all_classes_decide_then_the_recipe_keeps_a_subset():
    """EmoArt (paper): an 8-way classifier's own probabilities pick the top emotion and meet the 0.75 threshold;
    six emotions are then kept. A painting whose top class is excitement is dropped as such, not relabelled to its
    runner-up; the threshold reads the 8-way probability, not one renormalised over the six."""
    from emocurate.core.emotions import EMOTIONS

    ingest = pa.Table.from_pylist(
        [dict(seq=i, shard=0, id=k, source="wikiart", source_id=f"{i}", label=None, metadata="{}", width=8, height=8,
              format="JPEG", original_mode="RGB", ingest_error=None, ingest_dropped_by=None, image_bytes=b"")
         for i, k in enumerate("PQR")], schema=INGEST_SCHEMA)
    rows = {  # P: excitement on top (0.80); Q: awe 0.70 (0.78 once renormalised over six); R: fear 0.90
        "P": {"excitement": 0.80, "awe": 0.15}, "Q": {"awe": 0.70, "disgust": 0.10, "fear": 0.20}, "R": {"fear": 0.90}}
    probs = {e: [rows[k].get(e, 0.0) for k in "PQR"] for e in EMOTIONS}
    for k, row in rows.items():  # the rest of each row, spread evenly
        rest = (1 - sum(row.values())) / (8 - len(row))
        for e in EMOTIONS:
            if e not in row:
                probs[e]["PQR".index(k)] = rest
    classify = pa.table({"id": list("PQR"), **{f"prob_{e}": probs[e] for e in EMOTIONS}}, schema=classify_schema(EMOTIONS))
    recipe = CurateRecipe(sources=["wikiart"], emotions=["amusement", "awe", "contentment", "anger", "fear", "sadness"])
    out = {r["id"]: r for r in decide(ingest, classify, CAPTION_SCHEMA.empty_table(), CLIP_FILTER_SCHEMA.empty_table(),
                                      recipe).to_pylist()}
    assert set(out["P"]["emotion_probs"]) == set(EMOTIONS)  # every class the classifier scored is kept
    assert out["P"]["predicted_emotion"] == "excitement" and out["P"]["reason"] == "emotion_not_kept: excitement"
    assert out["Q"]["emotion"] == "awe" and out["Q"]["reason"].startswith("low_confidence: 0.700 < min_confidence 0.75")
    assert out["R"]["emotion"] == "fear" and out["R"]["dropped_by"] == "caption"  # passed classify
