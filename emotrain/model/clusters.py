"""Emotion clusters: a Gaussian per emotion over the CLIP image tokens the Visual-perception Encoder consumes.

Statistics are per token and per channel (mean and diagonal std over (T, Dv)); an optional full covariance over the
flattened tokens is kept only when that is small. At inference v_i is sampled from the chosen emotion's Gaussian with a
seeded generator. It does not compute image features itself (train.py feeds them in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from emocurate.core.filemode import follow_umask

FULL_COVARIANCE_MAX_DIM = 4096
"""Full covariance of T*Dv dims (263,168 for ViT-L/14) would not fit; it is offered only up to this size."""


class ClusterAccumulator:
    """Streaming sums (float64) of image tokens per emotion; `finish()` gives the clusters."""

    def __init__(self, emotions: Sequence[str], full_covariance: bool = False):
        self.emotions = list(emotions)
        self.full = full_covariance
        self.count = {e: 0 for e in self.emotions}
        self.sum: dict[str, torch.Tensor] = {}
        self.sumsq: dict[str, torch.Tensor] = {}
        self.outer: dict[str, torch.Tensor] = {}

    def add(self, tokens: torch.Tensor, emotions: Sequence[str]) -> None:  # tokens (B, T, Dv)
        tokens = tokens.detach().double().cpu()
        for emotion in set(emotions):
            rows = tokens[[i for i, e in enumerate(emotions) if e == emotion]]  # (n, T, Dv)
            if emotion not in self.sum:
                self.sum[emotion] = torch.zeros(rows.shape[1:], dtype=torch.float64)
                self.sumsq[emotion] = torch.zeros(rows.shape[1:], dtype=torch.float64)
                if self.full:
                    dim = rows[0].numel()
                    if dim > FULL_COVARIANCE_MAX_DIM:
                        raise ValueError(f"full covariance over {dim} dims is too large (max {FULL_COVARIANCE_MAX_DIM}); use diagonal")
                    self.outer[emotion] = torch.zeros(dim, dim, dtype=torch.float64)
            self.count[emotion] += rows.shape[0]
            self.sum[emotion] += rows.sum(0)
            self.sumsq[emotion] += (rows**2).sum(0)
            if self.full:
                flat = rows.flatten(1)
                self.outer[emotion] += flat.T @ flat

    def totals(self, token_shape: tuple[int, int]):
        """(count (E,), sum (E, T, Dv), sum of squares (E, T, Dv)) in float64, zeros where an emotion got no rows:
        what ranks add up (all-reduce) when each saw a shard of the images. Diagonal statistics only."""
        zeros = torch.zeros(token_shape, dtype=torch.float64)
        count = torch.tensor([float(self.count[e]) for e in self.emotions], dtype=torch.float64)
        total = torch.stack([self.sum.get(e, zeros) for e in self.emotions])
        total_sq = torch.stack([self.sumsq.get(e, zeros) for e in self.emotions])
        return count, total, total_sq

    @classmethod
    def from_totals(cls, emotions: Sequence[str], count, total, total_sq) -> "ClusterAccumulator":
        acc = cls(emotions)
        for i, e in enumerate(acc.emotions):
            acc.count[e] = int(count[i])
            acc.sum[e], acc.sumsq[e] = total[i].double().cpu(), total_sq[i].double().cpu()
        return acc

    def finish(self) -> "EmotionClusters":
        missing = [e for e in self.emotions if self.count[e] == 0]
        if missing:
            raise ValueError(f"no images for emotion(s) {missing}: cannot build their clusters")
        mean, std, cov = {}, {}, {}
        for e in self.emotions:
            n = self.count[e]
            m = self.sum[e] / n
            var = (self.sumsq[e] / n - m**2).clamp_min(0) * (n / max(n - 1, 1))
            mean[e], std[e] = m.float(), var.sqrt().float()
            if self.full:
                flat = m.flatten()
                cov[e] = ((self.outer[e] / n - torch.outer(flat, flat)) * (n / max(n - 1, 1))).float()
        return EmotionClusters(mean, std, dict(self.count), cov)


@dataclass
class EmotionClusters:
    mean: dict[str, torch.Tensor]  # emotion -> (T, Dv)
    std: dict[str, torch.Tensor]  # emotion -> (T, Dv)
    count: dict[str, int]
    covariance: dict[str, torch.Tensor] = field(default_factory=dict)  # emotion -> (T*Dv, T*Dv), optional

    @property
    def emotions(self) -> list[str]:
        return list(self.mean)

    def sample(self, emotion: str, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of v_i (n, T, Dv) from the emotion's Gaussian (full covariance when saved, else diagonal)."""
        if emotion not in self.mean:
            raise ValueError(f"no cluster for emotion {emotion!r}; clusters exist for: {', '.join(self.mean)}")
        mean, std = self.mean[emotion], self.std[emotion]
        noise = torch.randn((n, mean.numel()), generator=generator, dtype=torch.float32)  # (n, T*Dv)
        if emotion in self.covariance:
            cov = self.covariance[emotion].double()
            chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(cov.shape[0], dtype=cov.dtype))
            return mean + (noise.double() @ chol.T).float().view(n, *mean.shape)
        return mean + std * noise.view(n, *mean.shape)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {}
        for e in self.mean:
            tensors[f"{e}.mean"] = self.mean[e].contiguous()
            tensors[f"{e}.std"] = self.std[e].contiguous()
            tensors[f"{e}.count"] = torch.tensor([self.count[e]])
            if e in self.covariance:
                tensors[f"{e}.covariance"] = self.covariance[e].contiguous()
        save_file(tensors, str(path), metadata={"emotions": ",".join(self.mean), "format": "per-token diagonal Gaussian"})
        follow_umask(path)  # safetensors writes 0600

    @classmethod
    def load(cls, path: str | Path) -> "EmotionClusters":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            emotions = f.metadata()["emotions"].split(",")
            keys = set(f.keys())
            mean = {e: f.get_tensor(f"{e}.mean") for e in emotions}
            std = {e: f.get_tensor(f"{e}.std") for e in emotions}
            count = {e: int(f.get_tensor(f"{e}.count")[0]) for e in emotions}
            cov = {e: f.get_tensor(f"{e}.covariance") for e in emotions if f"{e}.covariance" in keys}
        return cls(mean, std, count, cov)
