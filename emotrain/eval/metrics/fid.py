"""FID the clean-fid way ("clean" mode): PIL bicubic float resize to 299, Inception features, Frechet distance.

Feature extractor: clean-fid's torchscript Inception (`inception-2015-12-05.pt`), loaded from a local file only; any
torchscript module with the same `.layers` interface works (tests build a tiny one). Real-image statistics are cached on
disk under a key of dataset fingerprint + extractor. It does not download anything.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emotrain.eval.metrics.images import Advance, ImageItem, batches

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
CLEAN_SIZE = (299, 299)


@dataclass
class FeatureExtractor:
    """A loaded torchscript Inception-like network; `name` and `sha256` identify it in results and cache keys."""

    module: object
    device: str
    name: str
    sha256: str

    def __call__(self, x):  # x: (B, 3, 299, 299) float in [0, 255] -> (B, D)
        import torch

        with torch.no_grad():
            feats = self.module.layers.forward((x.to(self.device) - 128) / 128)  # clean-fid's normalisation
        return feats.reshape(x.shape[0], -1).float().cpu()  # (B, D)


@dataclass
class Stats:
    """Gaussian statistics of a feature set: count, mean (D,), covariance (D, D)."""

    n: int
    mu: np.ndarray
    sigma: np.ndarray
    feats: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The (N, D) features themselves when N <= D (a cheaper exact FID; see `frechet_distance`); never cached."""
    _sqrt: np.ndarray | None = field(default=None, repr=False, compare=False)

    def sqrt_sigma(self) -> np.ndarray:
        """The PSD square root of the covariance (computed once: real statistics are compared with every model)."""
        if self._sqrt is None:
            w, v = np.linalg.eigh(self.sigma)  # (D,), (D, D)
            self._sqrt = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
        return self._sqrt


def load_inception(path: str | Path | None, device: str) -> FeatureExtractor:
    """Load clean-fid's torchscript Inception from a local file; a clear error when the option is unset or wrong."""
    import torch

    if not path:
        raise FileNotFoundError(
            f"FID needs clean-fid's Inception weights: download {INCEPTION_URL} and set fid.inception=PATH"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fid.inception={path} does not exist; download {INCEPTION_URL} there or fix the path")
    with warnings.catch_warnings():  # clean-fid's Inception is torchscript; torch's deprecation notice is not for users
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location=device).eval()
    return FeatureExtractor(module=module, device=device, name=path.name, sha256=file_sha256(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean_resize(image) -> np.ndarray:
    """clean-fid "clean" preprocessing of one RGB PIL image: (299, 299, 3) float32 in [0, 255]."""
    from cleanfid.resize import make_resizer

    return make_resizer("PIL", False, "bicubic", CLEAN_SIZE)(np.asarray(image))


def features(items: Sequence[ImageItem], extractor: FeatureExtractor, batch_size: int = 64,
             progress: Advance | None = None) -> np.ndarray:
    """Inception features of every image: (N, D) float32."""
    import torch

    out = []
    for batch in batches(items, batch_size):
        x = torch.from_numpy(np.stack([clean_resize(img) for img in batch])).permute(0, 3, 1, 2)  # (B, 3, 299, 299)
        out.append(extractor(x).numpy())
        if progress:
            progress(len(batch))
    if not out:
        raise ValueError("FID needs at least one image")
    return np.concatenate(out)


def stats_of(feats: np.ndarray) -> Stats:
    """Mean and covariance (rows = samples), as clean-fid computes them."""
    if len(feats) < 2:
        raise ValueError(f"FID needs at least 2 images per set; got {len(feats)}")
    low_rank = len(feats) <= feats.shape[1]
    feats = feats.astype(np.float64)
    return Stats(n=len(feats), mu=feats.mean(axis=0), sigma=np.cov(feats, rowvar=False), feats=feats if low_rank else None)


def pool(parts: Sequence[Stats]) -> Stats:
    """Exact statistics of the union of several sets from their own (n, mean, covariance)."""
    n = sum(p.n for p in parts)
    mu = sum(p.n * p.mu for p in parts) / n
    # sum of outer products over all samples, from each part's unbiased covariance
    scatter = sum((p.n - 1) * p.sigma + p.n * np.outer(p.mu, p.mu) for p in parts)
    return Stats(n=n, mu=mu, sigma=(scatter - n * np.outer(mu, mu)) / (n - 1))


def frechet_distance(gen: Stats, real: Stats) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), the formula clean-fid implements.

    tr((S1 S2)^1/2) is the sum of square roots of the eigenvalues of the symmetric PSD R^1/2 S1 R^1/2 (R = the real
    covariance), so two symmetric eigendecompositions replace clean-fid's general `scipy.linalg.sqrtm`: the same number
    (tested against clean-fid), several times faster at 2048-d, and exact for the rank-deficient covariances that
    1,000 images give in 2,048 dimensions. With N <= D generated images it solves the N x N problem instead.
    """
    if gen.feats is not None:  # N <= D: S_gen = Xc^T Xc / (N-1), and Xc S_real Xc^T / (N-1) has the same non-zero eigenvalues
        xc = gen.feats - gen.mu  # (N, D)
        eig = np.linalg.eigvalsh(xc @ real.sigma @ xc.T / (gen.n - 1))  # (N,): an N x N problem instead of D x D
    else:
        half = real.sqrt_sigma()
        eig = np.linalg.eigvalsh(half @ gen.sigma @ half)  # (D,) >= 0 up to rounding
    diff = gen.mu - real.mu
    return float(diff @ diff + np.trace(gen.sigma) + np.trace(real.sigma) - 2.0 * np.sqrt(np.clip(eig, 0.0, None)).sum())


class StatsCache:
    """Real-image statistics on disk: one `.npz` per key, written to a temporary name and renamed (a file is whole)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, key: str) -> Stats | None:
        path = self.folder / f"{key}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return Stats(n=int(data["n"]), mu=data["mu"], sigma=data["sigma"])

    def put(self, key: str, stats: Stats) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.tmp.npz"
        np.savez(tmp, n=stats.n, mu=stats.mu, sigma=stats.sigma)
        tmp.rename(self.folder / f"{key}.npz")
