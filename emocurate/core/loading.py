"""Small facts every model stage needs when it loads a model: which device, which dtype, which Hub commit.

It loads no model itself; the classify, caption and clip_filter stages call these helpers.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Sequence, TypeVar

T = TypeVar("T")

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_device(device: str, key: str) -> None:
    """Raise ValueError unless `device` is 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"{key} must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")


def check_positive(value: int, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1; got {value!r}")


def pick_device(device: str):
    """'auto' means cuda when available, else cpu; anything else is taken as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device) -> Any:
    """'auto' means bfloat16 on a GPU that supports it, float32 otherwise (CPU half precision is slow and lossy)."""
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def commit_hash(model_id: str, revision: str | None = None, filename: str = "config.json") -> str | None:
    """The Hub commit `from_pretrained(model_id, revision=...)` loaded from, read from the local Hub cache.

    None for a local folder (or a `tiny:` model) and for anything not found in the cache.
    """
    from pathlib import Path

    from huggingface_hub import try_to_load_from_cache

    if model_id.startswith("tiny:") or Path(model_id).exists():
        return None
    try:
        cached = try_to_load_from_cache(model_id, filename, revision=revision)
    except Exception:  # an id the Hub would reject: nothing to report
        return None
    if not isinstance(cached, str):
        return None
    parts = Path(cached).parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
    return commit if commit and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def rgb(image):
    """The image as RGB (the stages accept anything PIL opens; core/decode.py already normalises pipeline inputs)."""
    return image if image.mode == "RGB" else image.convert("RGB")
