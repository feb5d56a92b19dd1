"""Image lists for the metrics: list a folder, decode in a thread pool, pick a device, batch.

An image item is a path or an already-open PIL image; every metric accepts a sequence of either.
It does not resize: each metric applies its own backbone's preprocessing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

from PIL import Image

ImageItem = Union[str, Path, Image.Image]
Advance = Callable[[int], None]
"""A progress callback: called with the number of items just finished."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (so a run is reproducible)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_rgb(item: ImageItem) -> Image.Image:
    """An RGB PIL image from a path or an image; a broken file is an error naming the file."""
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    try:
        with Image.open(item) as img:
            return img.convert("RGB")
    except OSError as err:
        raise ValueError(f"cannot decode image {item}: {err}") from None


def batches(items: Sequence[ImageItem], batch_size: int, workers: int = 4) -> Iterator[list[Image.Image]]:
    """Decoded RGB images in order, `batch_size` at a time; decoding runs in threads (PIL releases the GIL)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(items), batch_size):
            yield list(pool.map(open_rgb, items[start:start + batch_size]))


def pick_device(device: str | None = None) -> str:
    """`device` as given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
