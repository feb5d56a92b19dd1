"""Decisions from stored scores: ingest errors, dedup, emotion set and confidence, caption state, CLIP bottom fraction.

A pure function of the stage tables and the recipe's thresholds -> one record per input (records.parquet). It runs
no model: `emocurate refilter` calls it again with new thresholds. Items that become eligible for a stage whose
scores were never computed are dropped with a reason that says to run `emocurate build` again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from emocurate.stages.per_shard import CAPTION_SCHEMA, CLIP_FILTER_SCHEMA, PROB_PREFIX, classify_schema
from emocurate.store import shards

NOT_CLASSIFIED = "not_classified_yet: run `emocurate build` again to classify it"
NOT_CAPTIONED = "not_captioned_yet: run `emocurate build` again to caption it"
NOT_SCORED = "not_clip_scored_yet: run `emocurate build` again to score it"
NOT_DONE = {"classify": NOT_CLASSIFIED, "caption": NOT_CAPTIONED, "clip_filter": NOT_SCORED}
"""Model stage -> the reason of a record that stage has not processed yet (the driver hands such records to it)."""
CLIP_MAX_TOKENS = 77


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


class _Decisions:
    """The records being decided: the ingest rows in input order, and for each the first stage that dropped it and why."""

    def __init__(self, ingest: pa.Table):
        df = ingest.select([c for c in ingest.column_names if c != "image_bytes"]).to_pandas()
        self.df = df.sort_values("seq", kind="stable").reset_index(drop=True)
        self.dropped_by = pd.Series([None] * len(self.df), dtype=object)
        self.reason = pd.Series([None] * len(self.df), dtype=object)

    def alive(self) -> np.ndarray:
        return self.dropped_by.isna().to_numpy()

    def drop(self, mask, stage, why) -> None:
        """Drop the rows of `mask` that are still alive: the first stage to drop a record names it."""
        mask = np.asarray(mask, dtype=bool) & self.alive()
        self.dropped_by[mask] = stage
        self.reason[mask] = why[mask] if isinstance(why, pd.Series) else why


def drop_ingest_failures(d: _Decisions) -> None:
    """The source gave no bytes, or the bytes do not decode (the reason ingest or the crawler recorded)."""
    failed = d.df["ingest_error"].notna()
    d.drop(failed, d.df["ingest_dropped_by"].fillna("ingest"), d.df["ingest_error"])


def drop_duplicates(d: _Decisions) -> None:
    """The first occurrence of a sha256 in input order wins."""
    df, alive = d.df, d.alive()
    first = df[alive].drop_duplicates("id", keep="first")
    origin = first.set_index("id")["source"] + ":" + first.set_index("id")["source_id"]
    dup = alive & ~df.index.isin(first.index)
    d.drop(dup, "dedup", "duplicate: same sha256 as " + df["id"].map(origin).fillna("?"))


class _Emotions:
    """Per record: the classifier's probabilities, its top emotion, the emotion used (label first) and its confidence."""

    def __init__(self, df: pd.DataFrame, classify: pa.Table):
        self.names = [c[len(PROB_PREFIX):] for c in classify.column_names if c.startswith(PROB_PREFIX)]
        probs = classify.to_pandas().drop_duplicates("id").set_index("id") if classify.num_rows else pd.DataFrame()
        self.matrix = np.full((len(df), len(self.names)), np.nan)  # (N, E)
        if len(self.names) and len(probs):
            joined = probs.reindex(df["id"])
            self.matrix = joined[[PROB_PREFIX + e for e in self.names]].to_numpy(dtype=np.float64)
        self.present = ~np.isnan(self.matrix).any(axis=1) if len(self.names) else np.zeros(len(df), bool)
        top = (np.nanargmax(np.where(np.isnan(self.matrix), -1, self.matrix), axis=1) if len(self.names)
               else np.zeros(len(df), int))
        self.predicted = pd.Series([self.names[t] if h else None for t, h in zip(top, self.present)], dtype=object)
        self.emotion = df["label"].where(df["label"].notna(), self.predicted)
        index_of = {e: i for i, e in enumerate(self.names)}
        self.confidence = np.array([self.matrix[i, index_of[e]] if isinstance(e, str) and e in index_of and self.present[i]
                                    else np.nan for i, e in enumerate(self.emotion)])


def drop_by_emotion(d: _Decisions, emo: _Emotions, recipe) -> None:
    """Not classified yet; a confidence under `classify.min_confidence` (over ALL the classifier's classes); then an
    emotion outside the recipe's `emotions` (the classifier decides first, the recipe keeps a subset)."""
    df = d.df
    d.drop(~emo.present, "classify", NOT_CLASSIFIED)
    threshold = recipe.classify.min_confidence
    applies = df["label"].isna() | recipe.apply_min_confidence_to_labelled
    low = applies & (np.nan_to_num(emo.confidence, nan=-1.0) < threshold)
    d.drop(low, "classify", pd.Series([f"low_confidence: {c:.3f} < min_confidence {threshold}" for c in emo.confidence],
                                      dtype=object))
    d.drop(*emotion_not_kept(emo.emotion, df["label"], recipe.emotions))


def drop_uncaptioned(d: _Decisions, emotion: pd.Series, captions: pa.Table) -> pd.Series:
    """One caption per (id, emotion prior); returns each record's caption (None where there is none)."""
    cap = captions.to_pandas()
    cap_ok = cap[cap["caption"].notna()].drop_duplicates(["id", "caption_emotion"]).set_index(["id", "caption_emotion"])
    cap_err = cap[cap["caption"].isna()].drop_duplicates(["id", "caption_emotion"], keep="last").set_index(["id", "caption_emotion"])
    keys = pd.MultiIndex.from_arrays([d.df["id"], emotion.astype(object)])
    caption = pd.Series(cap_ok["caption"].reindex(keys).to_numpy(), dtype=object)
    error = pd.Series(cap_err["caption_error"].reindex(keys).to_numpy(), dtype=object)
    d.drop(caption.isna() & error.notna(), "caption", "caption_error: " + error.astype(str) + " (retried on the next build)")
    d.drop(caption.isna(), "caption", NOT_CAPTIONED)
    return caption


def drop_low_clip_scores(d: _Decisions, emotion: pd.Series, caption: pd.Series, clip_scores: pa.Table,
                         fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The bottom `fraction` of CLIP scores within each emotion; returns (clip score, caption tokens) per record."""
    scores_tbl = clip_scores.to_pandas().drop_duplicates(["id", "caption"]).set_index(["id", "caption"])
    skeys = pd.MultiIndex.from_arrays([d.df["id"], caption])
    clip_score = scores_tbl["clip_score"].reindex(skeys).to_numpy(dtype=np.float64)
    tokens = scores_tbl["caption_tokens"].reindex(skeys).to_numpy(dtype=np.float64)
    d.drop(np.isnan(clip_score) & caption.notna().to_numpy(), "clip_filter", NOT_SCORED)
    scored = d.alive()
    if scored.any():
        mask = _bottom_fraction_mask(clip_score[scored], emotion[scored].to_numpy(), fraction, d.df["id"][scored].to_numpy())
        full = np.zeros(len(d.df), bool)
        full[np.flatnonzero(scored)[mask]] = True
        why = pd.Series([f"low_clip_score: {s:.4f}, in the bottom {fraction:g} of {e}" for s, e in zip(clip_score, emotion)],
                        dtype=object)
        d.drop(full, "clip_filter", why)
    return clip_score, tokens


def decide(ingest: pa.Table, classify: pa.Table, captions: pa.Table, clip_scores: pa.Table, recipe) -> pa.Table:
    """One row per ingest row (in input order) with status, the stage that dropped it and why, and every score."""
    d = _Decisions(ingest)
    drop_ingest_failures(d)
    if recipe.dedup:
        drop_duplicates(d)
    emo = _Emotions(d.df, classify)
    drop_by_emotion(d, emo, recipe)
    caption = drop_uncaptioned(d, emo.emotion, captions)
    clip_score, tokens = drop_low_clip_scores(d, emo.emotion, caption, clip_scores, recipe.clip_filter.drop_fraction)
    return _records(d, emo, caption, clip_score, tokens)


def _records(d: _Decisions, emo: _Emotions, caption: pd.Series, clip_score: np.ndarray, tokens: np.ndarray) -> pa.Table:
    df = d.df
    out = pd.DataFrame({
        "id": df["id"], "source": df["source"], "source_id": df["source_id"],
        "status": np.where(d.dropped_by.isna(), "kept", "dropped"), "dropped_by": d.dropped_by, "reason": d.reason,
        "label": df["label"], "emotion": emo.emotion, "emotion_confidence": emo.confidence, "predicted_emotion": emo.predicted,
        "caption": caption, "caption_tokens": pd.array([None if np.isnan(t) else int(t) for t in tokens], dtype="Int32"),
        "caption_truncated": pd.array([None if np.isnan(t) else bool(t > CLIP_MAX_TOKENS) for t in tokens], dtype="boolean"),
        "clip_score": clip_score, "width": df["width"], "height": df["height"], "format": df["format"],
        "original_mode": df["original_mode"], "metadata": df["metadata"], "shard": df["shard"], "seq": df["seq"],
    })
    schema = records_schema(emo.names)
    table = pa.Table.from_pandas(out, schema=schema.remove(schema.get_field_index("emotion_probs")), preserve_index=False)
    return table.add_column(10, schema.field("emotion_probs"), _probs_struct(emo.matrix, emo.present, emo.names, schema))


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



def decide_run(run_dir: Path, recipe, n: int) -> pa.Table:
    """Records from every finished shard of RUN (its first `n` ingest shards) and the recipe's thresholds (no model)."""
    from emocurate.stages.ingest import INGEST_SCHEMA, META_COLUMNS
    from emocurate.stages.table import STAGE

    meta = shards.read_stage(run_dir, "ingest", n, META_COLUMNS, INGEST_SCHEMA)
    classify = [t for t in (shards.read_shard(run_dir, STAGE["classify"].folder, i) for i in range(n)) if t is not None]
    classify = pa.concat_tables(classify) if classify else classify_schema([]).empty_table()
    captions = shards.read_stage(run_dir, STAGE["caption"].folder, n, schema=CAPTION_SCHEMA)
    scores = shards.read_stage(run_dir, STAGE["clip_filter"].folder, n, schema=CLIP_FILTER_SCHEMA)
    return decide(meta, classify, captions, scores, recipe)
