"""Emotion clusters: one Gaussian per emotion over whole CLIP image-token sets v_i (T, Dv), sampled at inference.

The paper samples v_i from "the corresponding emotion cluster ... represented by a Gaussian distribution". The
Visual-perception Encoder attends over a token set, so a draw must look like one: tokens of one image are strongly
correlated (they share the image's content), and a per-token diagonal Gaussian draws every value independently; the
encoder's attention averages such noise away and e_v barely varies (about 1/7 of the spread real token sets give).
Our choice: a low-rank Gaussian over the flattened token set (probabilistic PCA, Tipping & Bishop 1999):

    v = mean + sum_j z_j W_j + r * eps,   z ~ N(0, I_k), eps ~ N(0, I)

mean (T, Dv) is exact over all of the emotion's training images; the k loadings W_j (T, Dv) are the top principal
directions of up to `sample_images` token sets of that emotion (scaled by their standard deviation), so a draw moves
all tokens together the way real images do; r (T, Dv) is what per-element variance the k directions leave unexplained
(so each value's marginal variance equals the data's). k = 0 is the old per-token diagonal Gaussian (old files load
as such). Storing real token sets instead would cost T*Dv floats each (1 MB for ViT-L/14) and give no new ones.

File `emotion_clusters.safetensors`: metadata {"format": "coemogen-emotion-clusters/pca-v1", "emotions": "a,b,..."};
per emotion e: `e.mean` (T, Dv) f32, `e.residual_std` (T, Dv) f32, `e.components` (k, T, Dv) f16 (the W_j), `e.count`
(1,) int64. Old files ({format: "per-token diagonal Gaussian"}, `e.std`) load with k = 0. It does not embed images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

FORMAT = "coemogen-emotion-clusters/pca-v1"
OLD_FORMAT = "per-token diagonal Gaussian"


def pick_sample(labels: Sequence[str | None], emotions: Sequence[str], per_emotion: int, seed: int) -> dict[int, tuple[str, int]]:
    """Which rows' token sets the principal directions are estimated from: up to `per_emotion` rows per emotion,
    seeded. Returns {row: (emotion, slot)}; every rank computes the same map, so each keeps the rows it embeds."""
    picks: dict[int, tuple[str, int]] = {}
    for emotion in emotions:
        rows = [i for i, label in enumerate(labels) if label == emotion]
        chosen = sorted(random.Random(f"{seed}:{emotion}").sample(rows, min(per_emotion, len(rows))))
        picks.update({row: (emotion, slot) for slot, row in enumerate(chosen)})
    return picks


class ClusterAccumulator:
    """Streaming float64 sums of token sets per emotion (exact mean and per-element variance over every image) plus
    the picked token sets (see `pick_sample`) the principal directions come from; `finish()` gives the clusters."""

    def __init__(self, emotions: Sequence[str], picks: dict[int, tuple[str, int]] | None = None, components: int = 16):
        if components < 0:
            raise ValueError(f"components must be >= 0; got {components}")
        self.emotions = list(emotions)
        self.picks = picks or {}
        self.components = components
        self.slots = {e: sum(1 for emotion, _ in self.picks.values() if emotion == e) for e in self.emotions}
        self.count = {e: 0 for e in self.emotions}
        self.sum: dict[str, torch.Tensor] = {}
        self.sumsq: dict[str, torch.Tensor] = {}
        self.sample: dict[str, torch.Tensor] = {}  # emotion -> (slots, T, Dv) float32, zeros where another rank embeds

    def add(self, tokens: torch.Tensor, emotions: Sequence[str], rows: Sequence[int] | None = None) -> None:
        """tokens (B, T, Dv) of the images `rows` (dataset row numbers, to keep the picked ones) with their emotions."""
        tokens = tokens.detach().double().cpu()
        for emotion in set(emotions):
            rows_of = [i for i, e in enumerate(emotions) if e == emotion]
            batch = tokens[rows_of]  # (n, T, Dv)
            if emotion not in self.sum:
                self.sum[emotion] = torch.zeros(batch.shape[1:], dtype=torch.float64)
                self.sumsq[emotion] = torch.zeros(batch.shape[1:], dtype=torch.float64)
            self.count[emotion] += batch.shape[0]
            self.sum[emotion] += batch.sum(0)
            self.sumsq[emotion] += (batch**2).sum(0)
        for i, row in enumerate(rows if rows is not None else []):
            pick = self.picks.get(int(row))
            if pick is not None:
                emotion, slot = pick
                if emotion not in self.sample:
                    self.sample[emotion] = torch.zeros(self.slots[emotion], *tokens.shape[1:], dtype=torch.float32)
                self.sample[emotion][slot] = tokens[i].float()

    def totals(self, token_shape: tuple[int, int]):
        """(count (E,), sum (E, T, Dv), sum of squares (E, T, Dv)) in float64, zeros where an emotion got no rows:
        what ranks add up (all-reduce) when each saw a shard of the images."""
        zeros = torch.zeros(token_shape, dtype=torch.float64)
        count = torch.tensor([float(self.count[e]) for e in self.emotions], dtype=torch.float64)
        total = torch.stack([self.sum.get(e, zeros) for e in self.emotions])
        total_sq = torch.stack([self.sumsq.get(e, zeros) for e in self.emotions])
        return count, total, total_sq

    def picked(self, emotion: str, token_shape: tuple[int, int]) -> torch.Tensor:
        """The picked token sets of one emotion (slots, T, Dv), zeros in the slots other ranks fill: ranks sum them."""
        return self.sample.get(emotion, torch.zeros(self.slots.get(emotion, 0), *token_shape))

    def merge(self, count, total, total_sq, picked: dict[str, torch.Tensor]) -> None:
        """Replace this rank's sums and picked sets by the all-ranks ones (what `totals`/`picked` gave, reduced)."""
        for i, e in enumerate(self.emotions):
            self.count[e] = int(count[i])
            self.sum[e], self.sumsq[e] = total[i].double().cpu(), total_sq[i].double().cpu()
            if e in picked:
                self.sample[e] = picked[e].float().cpu()

    def finish(self) -> "EmotionClusters":
        missing = [e for e in self.emotions if self.count[e] == 0]
        if missing:
            raise ValueError(f"no images for emotion(s) {missing}: cannot build their clusters")
        mean, residual, components = {}, {}, {}
        for e in self.emotions:
            n = self.count[e]
            m = self.sum[e] / n
            var = (self.sumsq[e] / n - m**2).clamp_min(0) * (n / max(n - 1, 1))  # (T, Dv)
            w = principal_loadings(self.sample.get(e), self.components)  # (k, T, Dv)
            mean[e] = m.float()
            residual[e] = (var - (w.double() ** 2).sum(0)).clamp_min(0).sqrt().float() if len(w) else var.sqrt().float()
            components[e] = w.float()
        return EmotionClusters(mean, residual, components, dict(self.count))


def principal_loadings(sets: torch.Tensor | None, k: int) -> torch.Tensor:
    """The top-k principal directions of token sets (m, T, Dv), each scaled by its standard deviation: (k', T, Dv)
    with k' = min(k, m - 1, rank). Computed from the m x m Gram matrix, so T*Dv may be large."""
    if sets is None or k == 0 or sets.shape[0] < 2:
        shape = (0, *sets.shape[1:]) if sets is not None else (0, 0, 0)
        return torch.zeros(shape)
    m = sets.shape[0]
    x = sets.double().flatten(1)
    x = x - x.mean(0)  # (m, D)
    eigvals, eigvecs = torch.linalg.eigh(x @ x.T)  # ascending; (m,), (m, m)
    keep = [j for j in range(m - 1, -1, -1) if eigvals[j] > 1e-9 * max(float(eigvals[-1]), 1e-30)][:min(k, m - 1)]
    if not keep:
        return torch.zeros(0, *sets.shape[1:])
    v = eigvecs[:, keep]  # (m, k')
    # x^T v_j has norm sqrt(lambda_j); the variance along it is lambda_j / (m - 1): loading = x^T v_j / sqrt(m - 1)
    return (v.T @ x / (m - 1) ** 0.5).float().view(len(keep), *sets.shape[1:])


@dataclass
class EmotionClusters:
    mean: dict[str, torch.Tensor]  # emotion -> (T, Dv)
    residual_std: dict[str, torch.Tensor]  # emotion -> (T, Dv)
    components: dict[str, torch.Tensor]  # emotion -> (k, T, Dv) loadings W_j; k = 0: diagonal Gaussian
    count: dict[str, int]

    @property
    def emotions(self) -> list[str]:
        return list(self.mean)

    def sample(self, emotion: str, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of v_i (n, T, Dv): mean + z @ W + residual_std * eps (see the module docstring)."""
        if emotion not in self.mean:
            raise ValueError(f"no cluster for emotion {emotion!r}; clusters exist for: {', '.join(self.mean)}")
        mean, w = self.mean[emotion], self.components[emotion].float()
        z = torch.randn((n, w.shape[0]), generator=generator, dtype=torch.float32)  # (n, k)
        eps = torch.randn((n, *mean.shape), generator=generator, dtype=torch.float32)  # (n, T, Dv)
        low_rank = (z @ w.flatten(1)).view(n, *mean.shape) if w.shape[0] else 0.0
        return mean + low_rank + self.residual_std[emotion] * eps

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {}
        for e in self.mean:
            tensors[f"{e}.mean"] = self.mean[e].float().contiguous()
            tensors[f"{e}.residual_std"] = self.residual_std[e].float().contiguous()
            tensors[f"{e}.components"] = self.components[e].half().contiguous()
            tensors[f"{e}.count"] = torch.tensor([self.count[e]])
        save_file(tensors, str(path), metadata={"format": FORMAT, "emotions": ",".join(self.mean)})

    @classmethod
    def load(cls, path: str | Path) -> "EmotionClusters":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") not in (FORMAT, OLD_FORMAT) or "emotions" not in meta:
                raise ValueError(f"{path} is not an emotion_clusters file (format {meta.get('format')!r}; expected {FORMAT!r})")
            emotions = meta["emotions"].split(",")
            mean = {e: f.get_tensor(f"{e}.mean") for e in emotions}
            count = {e: int(f.get_tensor(f"{e}.count")[0]) for e in emotions}
            if meta["format"] == OLD_FORMAT:  # per-token diagonal Gaussian: no components
                residual = {e: f.get_tensor(f"{e}.std") for e in emotions}
                components = {e: torch.zeros(0, *mean[e].shape) for e in emotions}
            else:
                residual = {e: f.get_tensor(f"{e}.residual_std") for e in emotions}
                components = {e: f.get_tensor(f"{e}.components").float() for e in emotions}
        return cls(mean, residual, components, count)
