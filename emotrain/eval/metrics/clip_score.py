"""CLIP score of generated images against their emotion's captions (a bonus metric, not in the paper's table).

Per image: the mean over the captions of 100 * max(cos(image, caption), 0), the usual CLIP-score scaling.
"""

from __future__ import annotations

import numpy as np


def clip_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """`image_emb` (N, D), `text_emb` (T, D) -> (N,) mean clipped cosine x 100 over the T texts."""
    if len(text_emb) == 0:
        raise ValueError("CLIP score needs at least one caption")
    img = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    txt = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    return (100.0 * np.clip(img @ txt.T, 0.0, None)).mean(axis=1)  # (N, T) -> (N,)
