"""Bootstrap error bars: 95% intervals of each metric and whether two models' difference is significant.

Images (FID, Emo-A, Sem-C) or pairs (LPIPS, Sem-D) are resampled with replacement within each emotion, and the overall
statistic is recomputed per resample, exactly as the metric aggregates (pooled over images, or the mean of per-emotion
means). The real images (FID) are held fixed. Different models' images are independent, so replicate i of model A minus
replicate i of model B is a bootstrap draw of their difference. It does not compute any metric itself.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Aggregate = Literal["pooled", "mean_of_emotions"]


def replicates(per_emotion: dict[str, np.ndarray], resamples: int, seed: int, aggregate: Aggregate) -> np.ndarray:
    """(R,) bootstrap replicates of the overall mean of per-item `values` (one 1-d array per emotion)."""
    rng = np.random.default_rng(seed)
    sums, counts, means = np.zeros(resamples), 0, []
    for emotion in sorted(per_emotion):  # a fixed order: the same seed gives the same replicates
        values = np.asarray(per_emotion[emotion], dtype=np.float64)
        draws = values[rng.integers(0, len(values), size=(resamples, len(values)))]  # (R, n)
        sums += draws.sum(axis=1)
        counts += len(values)
        means.append(draws.mean(axis=1))
    return sums / counts if aggregate == "pooled" else np.mean(means, axis=0)


def fid_replicates(features: dict[str, np.ndarray], real: dict, resamples: int, seed: int) -> np.ndarray:
    """(R,) replicates of the pooled FID: each emotion's generated features resampled, the real statistics fixed."""
    from emotrain.eval.metrics.fid import frechet_distance, pool, stats_of

    rng = np.random.default_rng(seed)
    real_pooled = pool([real[e] for e in sorted(features)])
    out = np.empty(resamples)
    for r in range(resamples):
        parts = [stats_of(features[e][rng.integers(0, len(features[e]), len(features[e]))]) for e in sorted(features)]
        for part in parts:
            part.feats = None  # pooled statistics: the D x D path
        out[r] = frechet_distance(pool(parts), real_pooled)
    return out


def interval(reps, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the replicates."""
    reps = np.asarray(reps, dtype=np.float64)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high)


def difference(reps_a, reps_b, level: float = 0.95) -> dict:
    """Bootstrap interval of A - B; significant when it excludes 0."""
    n = min(len(reps_a), len(reps_b))
    if n == 0:
        raise ValueError("no bootstrap replicates to compare")
    low, high = interval(np.asarray(reps_a[:n]) - np.asarray(reps_b[:n]), level)
    return {"low": low, "high": high, "significant": bool(low > 0 or high < 0), "resamples": n}
