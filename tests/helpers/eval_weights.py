"""Random-init weight files in the formats the eval backbones read (built in code, never downloaded), and test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_tiny_inception(path: Path) -> Path:
    """A torchscript module with clean-fid's Inception interface (`.layers` on [-1, 1] input) and 32-d features."""
    import torch
    from torch import nn

    class TinyInception(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())

        def forward(self, x):
            return self.layers(x)

    torch.manual_seed(0)
    torch.jit.script(TinyInception()).save(str(path))
    return path


def write_alexnet(path: Path) -> Path:
    """torchvision AlexNet's `features.*` weights, random init (what `alexnet-owt-7be5be79.pth` holds, minus the head)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return path


def write_places(path: Path, arch: str = "resnet18") -> Path:
    """A CSAIL-format Places365 checkpoint: {"state_dict": {"module.<key>": tensor}, "arch", "epoch"}, 365 classes."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=365)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "arch": arch, "epoch": 90}, path)
    return path


def noise_images(folder: Path, n: int, seed: int, size: int = 40) -> list[Path]:
    """`n` random-noise PNGs in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def solid_images(folder: Path, colour: tuple[int, int, int], n: int, size: int = 40, jitter: int = 0, seed: int = 0) -> list[Path]:
    """`n` PNGs of one colour (plus optional per-image noise of +-jitter) in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = np.full((size, size, 3), colour, dtype=np.int16)
        if jitter:
            arr = arr + rng.integers(-jitter, jitter + 1, arr.shape)
        path = folder / f"{i:03d}.png"
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
