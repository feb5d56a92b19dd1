"""Decisions from stored scores: ingest errors, dedup, emotion set and confidence, caption state, CLIP bottom fraction.

A pure function of the stage tables and the recipe's thresholds -> one record per input (records.parquet). It runs
no model: `emocurate refilter` calls it again with new thresholds. Items that become eligible for a stage whose
scores were never computed are dropped with a reason that says to run `emocurate build` again.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

PROB_PREFIX = "prob_"
NOT_CLASSIFIED = "not_classified_yet: run `emocurate build` again to classify it"
NOT_CAPTIONED = "not_captioned_yet: run `emocurate build` again to caption it"
NOT_SCORED = "not_clip_scored_yet: run `emocurate build` again to score it"

CAPTION_SCHEMA = pa.schema([
    ("id", pa.string()), ("caption_emotion", pa.string()), ("caption", pa.string()),
    ("caption_error", pa.string()), ("caption_raw", pa.string()),
])
CLIPSCORE_SCHEMA = pa.schema([
    ("id", pa.string()), ("caption", pa.string()), ("clip_score", pa.float64()), ("caption_tokens", pa.int32()),
])
CLIP_MAX_TOKENS = 77


def classify_schema(emotions: Sequence[str]) -> pa.Schema:
    """Classify shards: the id and one probability column per classifier emotion."""
    return pa.schema([("id", pa.string())] + [(PROB_PREFIX + e, pa.float32()) for e in emotions])


def records_schema(classifier_emotions: Sequence[str]) -> pa.Schema:
    probs = pa.struct([(e, pa.float32()) for e in classifier_emotions]) if classifier_emotions else pa.struct([("none", pa.float32())])
    return pa.schema([
        ("id", pa.string()), ("source", pa.string()), ("source_id", pa.string()),
        ("status", pa.string()), ("dropped_by", pa.string()), ("reason", pa.string()),
        ("label", pa.string()), ("emotion", pa.string()), ("emotion_confidence", pa.float64()),
        ("predicted_emotion", pa.string()), ("emotion_probs", probs),
        ("caption", pa.string()), ("caption_tokens", pa.int32()), ("caption_truncated", pa.bool_()),
        ("clip_score", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
        ("format", pa.string()), ("original_mode", pa.string()), ("metadata", pa.string()),
        ("shard", pa.int32()), ("seq", pa.int64()),
    ])


def _bottom_fraction_mask(scores, groups, fraction, ids):
    from emocurate.stages.clip_filter import bottom_fraction_mask

    return np.asarray(bottom_fraction_mask(scores, groups, fraction, ids), dtype=bool)


def decide(ingest: pa.Table, classify: pa.Table, captions: pa.Table, clipscores: pa.Table, recipe) -> pa.Table:
    """One row per ingest row (in input order) with status, the stage that dropped it and why, and every score."""
    df = ingest.select([c for c in ingest.column_names if c != "image_bytes"]).to_pandas()
    df = df.sort_values("seq", kind="stable").reset_index(drop=True)
    clf_emotions = [c[len(PROB_PREFIX):] for c in classify.column_names if c.startswith(PROB_PREFIX)]
    dropped_by = pd.Series([None] * len(df), dtype=object)
    reason = pd.Series([None] * len(df), dtype=object)

    def drop(mask, stage, why):
        mask = np.asarray(mask, dtype=bool) & dropped_by.isna().to_numpy()
        dropped_by[mask] = stage
        reason[mask] = why[mask] if isinstance(why, pd.Series) else why

    # ingest: the source gave no bytes, or the bytes do not decode
    failed = df["ingest_error"].notna()
    dropped_by[failed] = df["ingest_dropped_by"].fillna("ingest")[failed]
    reason[failed] = df["ingest_error"][failed]

    # dedup: the first occurrence of a sha256 in input order wins
    if recipe.dedup:
        alive = dropped_by.isna()
        first = df[alive].drop_duplicates("id", keep="first")
        origin = first.set_index("id")["source"] + ":" + first.set_index("id")["source_id"]
        dup = alive & ~df.index.isin(first.index)
        drop(dup, "dedup", "duplicate: same sha256 as " + df["id"].map(origin).fillna("?"))

    # classify: label or top prediction over all the classifier's classes, confidence threshold, then the recipe's emotions
    probs = classify.to_pandas().drop_duplicates("id").set_index("id") if classify.num_rows else pd.DataFrame()
    prob_matrix = np.full((len(df), len(clf_emotions)), np.nan)
    if len(clf_emotions) and len(probs):
        joined = probs.reindex(df["id"])
        prob_matrix = joined[[PROB_PREFIX + e for e in clf_emotions]].to_numpy(dtype=np.float64)
    has_probs = ~np.isnan(prob_matrix).any(axis=1) if len(clf_emotions) else np.zeros(len(df), bool)
    top = np.where(has_probs, np.nanargmax(np.where(np.isnan(prob_matrix), -1, prob_matrix), axis=1) if len(clf_emotions) else 0, 0)
    predicted = pd.Series([clf_emotions[t] if h else None for t, h in zip(top, has_probs)], dtype=object)
    emotion = df["label"].where(df["label"].notna(), predicted)
    index_of = {e: i for i, e in enumerate(clf_emotions)}
    confidence = np.array([prob_matrix[i, index_of[e]] if isinstance(e, str) and e in index_of and has_probs[i] else np.nan
                           for i, e in enumerate(emotion)])
    drop(~has_probs, "classify", NOT_CLASSIFIED)
    threshold = recipe.classify.min_confidence
    applies = df["label"].isna() | recipe.apply_min_confidence_to_labelled
    low = applies & (np.nan_to_num(confidence, nan=-1.0) < threshold)
    drop(low, "classify", pd.Series([f"low_confidence: {c:.3f} < min_confidence {threshold}" for c in confidence], dtype=object))
    drop(*emotion_not_kept(emotion, df["label"], recipe.emotions))

    # caption: one caption per (id, emotion prior)
    cap = captions.to_pandas()
    cap_ok = cap[cap["caption"].notna()].drop_duplicates(["id", "caption_emotion"]).set_index(["id", "caption_emotion"])
    cap_err = cap[cap["caption"].isna()].drop_duplicates(["id", "caption_emotion"], keep="last").set_index(["id", "caption_emotion"])
    keys = pd.MultiIndex.from_arrays([df["id"], emotion.astype(object)])
    caption = pd.Series(cap_ok["caption"].reindex(keys).to_numpy(), dtype=object)
    error = pd.Series(cap_err["caption_error"].reindex(keys).to_numpy(), dtype=object)
    drop(caption.isna() & error.notna(), "caption", "caption_error: " + error.astype(str) + " (retried on the next build)")
    drop(caption.isna(), "caption", NOT_CAPTIONED)

    # clip filter: the bottom fraction of CLIP scores within each emotion
    scores_tbl = clipscores.to_pandas().drop_duplicates(["id", "caption"]).set_index(["id", "caption"])
    skeys = pd.MultiIndex.from_arrays([df["id"], caption])
    clip_score = scores_tbl["clip_score"].reindex(skeys).to_numpy(dtype=np.float64)
    tokens = scores_tbl["caption_tokens"].reindex(skeys).to_numpy(dtype=np.float64)
    drop(np.isnan(clip_score) & caption.notna().to_numpy(), "clip_filter", NOT_SCORED)
    scored = dropped_by.isna().to_numpy()
    if scored.any():
        fraction = recipe.clip_filter.drop_fraction
        mask = _bottom_fraction_mask(clip_score[scored], emotion[scored].to_numpy(), fraction, df["id"][scored].to_numpy())
        full = np.zeros(len(df), bool)
        full[np.flatnonzero(scored)[mask]] = True
        why = pd.Series([f"low_clip_score: {s:.4f}, in the bottom {fraction:g} of {e}" for s, e in zip(clip_score, emotion)], dtype=object)
        drop(full, "clip_filter", why)

    out = pd.DataFrame({
        "id": df["id"], "source": df["source"], "source_id": df["source_id"],
        "status": np.where(dropped_by.isna(), "kept", "dropped"), "dropped_by": dropped_by, "reason": reason,
        "label": df["label"], "emotion": emotion, "emotion_confidence": confidence, "predicted_emotion": predicted,
        "caption": caption, "caption_tokens": pd.array([None if np.isnan(t) else int(t) for t in tokens], dtype="Int32"),
        "caption_truncated": pd.array([None if np.isnan(t) else bool(t > CLIP_MAX_TOKENS) for t in tokens], dtype="boolean"),
        "clip_score": clip_score, "width": df["width"], "height": df["height"], "format": df["format"],
        "original_mode": df["original_mode"], "metadata": df["metadata"], "shard": df["shard"], "seq": df["seq"],
    })
    schema = records_schema(clf_emotions)
    table = pa.Table.from_pandas(out, schema=schema.remove(schema.get_field_index("emotion_probs")), preserve_index=False)
    return table.add_column(10, schema.field("emotion_probs"), _probs_struct(prob_matrix, has_probs, clf_emotions, schema))


def emotion_not_kept(emotion: pd.Series, label: pd.Series, kept: Sequence[str]):
    """(mask, stage, reason) for items whose emotion (label, else the classifier's top class over ALL its classes) is
    not among the recipe's `emotions`: e.g. a painting whose top class is excitement, in a six-emotion EmoArt."""
    outside = ~emotion.isin(set(kept)).to_numpy()
    why = pd.Series([f"emotion_not_kept: {e}" + (" (label)" if isinstance(lab, str) else "")
                     for e, lab in zip(emotion, label)], dtype=object)
    return outside, "classify", why


def _probs_struct(matrix: np.ndarray, present: np.ndarray, emotions: Sequence[str], schema: pa.Schema) -> pa.Array:
    struct_type = schema.field("emotion_probs").type
    if not emotions:
        return pa.nulls(len(matrix), struct_type)
    arrays = [pa.array(np.nan_to_num(matrix[:, i]).astype(np.float32)) for i in range(len(emotions))]
    return pa.StructArray.from_arrays(arrays, fields=list(struct_type), mask=pa.array(~present))

