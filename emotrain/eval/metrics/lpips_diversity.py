"""LPIPS diversity: mean AlexNet-LPIPS (v0.1) distance over random pairs of generated images of one emotion.

Inputs are scaled to [-1, 1] as LPIPS expects (EmoGen fed [0, 1]: a bug). The linear layers ship in the `lpips`
wheel; the AlexNet trunk is loaded from a local torchvision weights file, never downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from emotrain.eval.metrics.images import Advance, ImageItem, open_rgb

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


def load_lpips(alexnet_path: str | Path | None, device: str):
    """`lpips.LPIPS(net="alex")` with its shipped linear layers and the AlexNet trunk from `alexnet_path`.

    The file is a torchvision AlexNet state dict (full, or only its `features.*` keys).
    """
    import lpips
    import torch

    if not alexnet_path:
        raise FileNotFoundError(f"LPIPS needs torchvision's AlexNet weights: download {ALEXNET_URL} and set lpips.alexnet=PATH")
    alexnet_path = Path(alexnet_path)
    if not alexnet_path.is_file():
        raise FileNotFoundError(f"lpips.alexnet={alexnet_path} does not exist; download {ALEXNET_URL} there or fix the path")
    with warnings.catch_warnings():  # lpips passes torchvision the deprecated `pretrained=False`: harmless here
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(alexnet_path, map_location="cpu", weights_only=True)
    trunk = {}
    for key in model.net.state_dict():  # "slice2.3.weight" <- torchvision's "features.3.weight"
        source = "features." + key.split(".", 1)[1]
        if source not in state:
            raise ValueError(f"lpips.alexnet={alexnet_path} is not a torchvision AlexNet state dict (no {source!r})")
        trunk[key] = state[source]
    model.net.load_state_dict(trunk)
    return model.eval().to(device)


def to_lpips_input(images, size: int | None, zero_one: bool = False):
    """RGB PIL images -> (B, 3, H, W) float in [-1, 1] ([0, 1] with `zero_one`: EmoGen's protocol, for comparison
    only); resized (bicubic) to size x size when `size` is set."""
    import torch

    if size:
        images = [img.resize((size, size), resample=3) for img in images]
    shapes = {img.size for img in images}
    if len(shapes) > 1:
        raise ValueError(f"LPIPS pairs need equal image sizes; got {sorted(shapes)}: set lpips.image_size to resize")
    arr = np.stack([np.asarray(img, dtype=np.float32) for img in images])  # (B, H, W, 3) in [0, 255]
    tensor = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return tensor / 255.0 if zero_one else tensor / 127.5 - 1.0


def lpips_distances(items: Sequence[ImageItem], pairs: np.ndarray, model, image_size: int | None = None,
                    batch_size: int = 32, progress: Advance | None = None, zero_one: bool = False) -> np.ndarray:
    """LPIPS distance of each pair (i, j) of `items`: (P,) float64 (`zero_one`: see `to_lpips_input`)."""
    import torch

    device = next(model.parameters()).device
    cache: dict[int, object] = {}
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        needed = set(chunk.ravel().tolist())
        cache = {k: v for k, v in cache.items() if k in needed}  # keep only images this chunk reuses
        for k in needed - cache.keys():
            cache[k] = open_rgb(items[k])
        a = to_lpips_input([cache[i] for i in chunk[:, 0]], image_size, zero_one).to(device)
        b = to_lpips_input([cache[j] for j in chunk[:, 1]], image_size, zero_one).to(device)
        with torch.no_grad():
            out.append(model(a, b).reshape(-1).double().cpu().numpy())  # (B,)
        if progress:
            progress(len(chunk))
    return np.concatenate(out)
