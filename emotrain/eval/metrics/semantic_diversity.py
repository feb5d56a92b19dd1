"""Sem-D: how different the contents of one emotion's images are, from CLIP image embeddings of random pairs.

Two variants over the same pairs: mean per-dimension squared difference (the paper's numbers) and 1 - cosine.
Pairs come from one emotion's list only (EmoGen leaked earlier emotions into later pools: a bug we do not copy).
"""

from __future__ import annotations

import numpy as np


def pair_distances(embeddings: np.ndarray, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair: {"mse": (P,) mean per-dimension squared difference, "one_minus_cos": (P,)}."""
    a = embeddings[pairs[:, 0]].astype(np.float64)  # (P, D)
    b = embeddings[pairs[:, 1]].astype(np.float64)  # (P, D)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"mse": ((a - b) ** 2).mean(axis=1), "one_minus_cos": 1 - cos}


def semantic_diversity(embeddings: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
    """`embeddings` (N, D) of one emotion's images, `pairs` (P, 2) indexing them -> {"mse", "one_minus_cos"}."""
    return {k: float(v.mean()) for k, v in pair_distances(embeddings, pairs).items()}
