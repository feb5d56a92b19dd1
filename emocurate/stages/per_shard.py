"""The per-shard work of each model stage as pure functions: (shard rows, loaded model, batch size) -> score table.

No scheduling, no files, no decisions: every executor runs the same functions over the same shards
(emocurate/stages/table.py lists them). Rows carry the original file bytes; images are decoded here, a batch at a time.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import pyarrow as pa

from emocurate.core.decode import decode_image

PROB_PREFIX = "prob_"
CAPTION_SCHEMA = pa.schema([
    ("id", pa.string()), ("caption_emotion", pa.string()), ("caption", pa.string()),
    ("caption_error", pa.string()), ("caption_raw", pa.string()),
])
CLIP_FILTER_SCHEMA = pa.schema([
    ("id", pa.string()), ("caption", pa.string()), ("clip_score", pa.float64()), ("caption_tokens", pa.int32()),
])


def classify_schema(emotions: Sequence[str]) -> pa.Schema:
    """Classify shards: the id and one probability column per classifier emotion."""
    return pa.schema([("id", pa.string())] + [(PROB_PREFIX + e, pa.float32()) for e in emotions])

# rows here already passed ingest's size checks; decoding again only needs the bomb guard off for them
_NO_LIMIT = 1 << 62


def _batches(n: int, size: int):
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + size))


def _images(blobs: Sequence[bytes]):
    out = []
    for blob in blobs:
        decoded = decode_image(blob, max_pixels=_NO_LIMIT, max_side=_NO_LIMIT)
        if decoded.image is None:  # cannot happen for rows that passed ingest; fail loudly if it does
            raise ValueError(f"image that passed ingest no longer decodes: {decoded.reason}")
        out.append(decoded.image)
    return out


def classify_shard(rows: pa.Table, classifier, batch_size: int, tick: Optional[Callable[[int], None]] = None) -> pa.Table:
    """rows: id, image_bytes -> id + one probability column per `classifier.emotions`."""
    ids = rows.column("id").to_pylist()
    blobs = rows.column("image_bytes").to_pylist()
    emotions = list(classifier.emotions)
    probs = np.zeros((len(ids), len(emotions)), dtype=np.float32)  # (N, E)
    for sl in _batches(len(ids), batch_size):
        probs[sl] = np.asarray(classifier.predict(_images(blobs[sl])), dtype=np.float32)
        if tick:
            tick(sl.stop - sl.start)
    columns = {"id": ids, **{PROB_PREFIX + e: probs[:, i] for i, e in enumerate(emotions)}}
    return pa.table(columns, schema=classify_schema(emotions))


def caption_shard(rows: pa.Table, captioner, batch_size: int, tick: Optional[Callable[[int], None]] = None) -> pa.Table:
    """rows: id, image_bytes, emotion -> caption or caption_error per row. A failing batch is recorded, never raised."""
    ids = rows.column("id").to_pylist()
    blobs = rows.column("image_bytes").to_pylist()
    emotions = rows.column("emotion").to_pylist()
    out = {name: [] for name in CAPTION_SCHEMA.names}
    for sl in _batches(len(ids), batch_size):
        try:
            results = captioner.caption(_images(blobs[sl]), emotions[sl])
            texts = [(r.text or None, r.error, r.raw) for r in results]
        except Exception as err:  # one bad batch (endpoint down, OOM) must not end the run: recorded, retried next build
            texts = [(None, f"{type(err).__name__}: {err}", None)] * (sl.stop - sl.start)
        for i, (text, error, raw) in zip(range(sl.start, sl.stop), texts):
            out["id"].append(ids[i])
            out["caption_emotion"].append(emotions[i])
            out["caption"].append(text)
            out["caption_error"].append(None if text else (error or "empty caption"))
            out["caption_raw"].append(raw)
        if tick:
            tick(sl.stop - sl.start)
    return pa.table(out, schema=CAPTION_SCHEMA)


def clip_filter_shard(rows: pa.Table, scorer, batch_size: int, tick: Optional[Callable[[int], None]] = None) -> pa.Table:
    """rows: id, image_bytes, caption -> cosine CLIP score and caption token count per row."""
    ids = rows.column("id").to_pylist()
    blobs = rows.column("image_bytes").to_pylist()
    captions = rows.column("caption").to_pylist()
    scores = np.zeros(len(ids), dtype=np.float64)  # (N,)
    for sl in _batches(len(ids), batch_size):
        scores[sl] = np.asarray(scorer.score(_images(blobs[sl]), captions[sl]), dtype=np.float64)
        if tick:
            tick(sl.stop - sl.start)
    tokens = [int(t) for t in scorer.count_tokens(captions)] if captions else []
    return pa.table({"id": ids, "caption": captions, "clip_score": scores, "caption_tokens": tokens}, schema=CLIP_FILTER_SCHEMA)
