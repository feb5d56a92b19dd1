"""CLIP image and text embeddings (transformers `CLIPModel`), shared by Sem-D and the CLIP score.

Embeddings are the projected ones (`get_image_features().pooler_output`), not L2-normalised: Sem-D's MSE variant is
defined on them. Texts longer than the text tower's 77 tokens are truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from emotrain.eval.metrics.images import Advance, ImageItem, batches


@dataclass
class Clip:
    model: object
    processor: object
    device: str
    model_id: str
    revision: str | None


def load_clip(model_id: str, revision: str | None, device: str) -> Clip:
    """A CLIPModel + processor from a Hub id, a local folder or `tiny:clip`."""
    from transformers import AutoProcessor, CLIPModel

    from emocurate.core.tiny import resolve

    path = resolve(model_id)
    model = CLIPModel.from_pretrained(path, revision=revision).eval().to(device)
    processor = AutoProcessor.from_pretrained(path, revision=revision)
    return Clip(model=model, processor=processor, device=device, model_id=model_id, revision=revision)


def image_embeddings(items: Sequence[ImageItem], clip: Clip, batch_size: int = 64,
                     progress: Advance | None = None) -> np.ndarray:
    """(N, D) float32 projected image embeddings."""
    import torch

    out = []
    for batch in batches(items, batch_size):
        pixels = clip.processor(images=batch, return_tensors="pt")["pixel_values"].to(clip.device)  # (B, 3, S, S)
        with torch.no_grad():
            out.append(clip.model.get_image_features(pixel_values=pixels).pooler_output.float().cpu().numpy())
        if progress:
            progress(len(batch))
    return np.concatenate(out) if out else np.zeros((0, clip.model.config.projection_dim), np.float32)


def text_embeddings(texts: Sequence[str], clip: Clip, batch_size: int = 256) -> np.ndarray:
    """(T, D) float32 projected text embeddings."""
    import torch

    out = []
    for start in range(0, len(texts), batch_size):
        tokens = clip.processor(text=list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                                truncation=True, max_length=77).to(clip.device)
        with torch.no_grad():
            out.append(clip.model.get_text_features(**tokens).pooler_output.float().cpu().numpy())
    return np.concatenate(out)
