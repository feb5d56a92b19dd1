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


def fid_replicates(features: dict[str, np.ndarray], real: dict, resamples: int, seed: int,
                   device: str = "cpu") -> np.ndarray:
    """(R,) replicates of the pooled FID: each emotion's generated features resampled, the real statistics fixed.

    The features are projected once by the real covariance's square root R^1/2, so a replicate costs one D x D Gram
    matrix and one symmetric eigendecomposition (float64 torch, on `device`: seconds per replicate on CPU at 2048-d,
    milliseconds on a GPU)."""
    import torch

    from emotrain.eval.metrics.fid import pool

    rng = np.random.default_rng(seed)
    emotions = sorted(features)
    real_pooled = pool([real[e] for e in emotions])
    half = torch.from_numpy(real_pooled.sqrt_sigma()).to(device, torch.float64)  # (D, D)
    feats = {e: torch.from_numpy(np.asarray(features[e])).to(device, torch.float64) for e in emotions}  # (N, D)
    projected = {e: feats[e] @ half for e in emotions}  # (N, D)
    real_mu = torch.from_numpy(real_pooled.mu).to(device, torch.float64)
    real_trace = float(np.trace(real_pooled.sigma))
    out = np.empty(resamples)
    for r in range(resamples):
        idx = {e: torch.from_numpy(rng.integers(0, len(feats[e]), len(feats[e]))).to(device) for e in emotions}
        x = torch.cat([feats[e][idx[e]] for e in emotions])  # (N, D): the resampled union of every emotion
        y = torch.cat([projected[e][idx[e]] for e in emotions])  # (N, D): the same rows times R^1/2
        out[r] = pooled_fid(x, y, real_mu, real_trace)
    return out


def pooled_fid(x, y, real_mu, real_trace: float) -> float:
    """FID of the rows `x` (N, D) against real statistics, given y = x R^1/2: |mu - mu_r|^2 + tr(S) + tr(R)
    - 2 tr((R^1/2 S R^1/2)^1/2), with R^1/2 S R^1/2 = Yc^T Yc / (N - 1)."""
    import torch

    n = x.shape[0]
    mu = x.mean(0)
    xc, yc = x - mu, y - y.mean(0)
    eig = torch.linalg.eigvalsh(yc.T @ yc / (n - 1))  # (D,)
    trace = float((xc * xc).sum()) / (n - 1)
    return float(((mu - real_mu) ** 2).sum()) + trace + real_trace - 2.0 * float(eig.clamp_min(0).sqrt().sum())


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
