"""The optimizer class a recipe asks for: torch's AdamW, or bitsandbytes' 8-bit AdamW (optim.adam_8bit).

It does not choose parameters or learning rates (train.py does).
"""

from __future__ import annotations


def adamw_class(eight_bit: bool = False) -> type:
    """torch.optim.AdamW, or bitsandbytes.optim.AdamW8bit with a clear error when bitsandbytes is not installed."""
    if not eight_bit:
        import torch

        return torch.optim.AdamW
    try:
        import bitsandbytes
    except ImportError as err:
        raise ValueError("optim.adam_8bit=true needs bitsandbytes: `pip install bitsandbytes` (8-bit optimizer states "
                         "pay off on CUDA GPUs), or set optim.adam_8bit=false") from err
    return bitsandbytes.optim.AdamW8bit
