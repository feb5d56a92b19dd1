"""Random unordered pairs of distinct images, for the pairwise diversity metrics (LPIPS, Sem-D).

Pairs index one image list, so they never cross the emotion that list belongs to.
"""

from __future__ import annotations

import numpy as np


def sample_pairs(n_images: int, n_pairs: int, seed: int) -> np.ndarray:
    """`n_pairs` distinct pairs (i < j) of `range(n_images)`, uniformly without replacement; all pairs if fewer exist.

    Returns an int64 array of shape (P, 2), sorted, so the same (n_images, n_pairs, seed) always gives the same pairs.
    """
    if n_images < 2:
        raise ValueError(f"need at least 2 images to form a pair; got {n_images}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1; got {n_pairs}")
    total = n_images * (n_images - 1) // 2
    rng = np.random.default_rng(seed)
    if n_pairs >= total:
        flat = np.arange(total)
    else:
        flat = np.sort(rng.choice(total, size=n_pairs, replace=False))
    return _unrank(flat, n_images)


def _unrank(flat: np.ndarray, n: int) -> np.ndarray:
    """Map pair ranks 0..n(n-1)/2-1 (row-major over i < j) to (i, j)."""
    # rows before i hold i*n - i*(i+1)/2 pairs; find the largest such i with start <= k
    starts = np.array([i * n - i * (i + 1) // 2 for i in range(n)])
    i = np.searchsorted(starts, flat, side="right") - 1
    j = flat - starts[i] + i + 1
    return np.stack([i, j], axis=1).astype(np.int64)
