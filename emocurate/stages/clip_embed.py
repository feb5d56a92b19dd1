"""L2-normalised image and text embeddings from any Hugging Face CLIP checkpoint (transformers backend).

Shared by the zero-shot and probe classifiers and the CLIP scorer. It computes embeddings only; no decisions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from emocurate.core.loading import batched, commit_hash, pick_device, rgb
from emocurate.core.tiny import resolve


class HFClipEncoder:
    """A CLIP model + processor on one device; `images()` / `texts()` return (N, D) float32 unit vectors."""

    backend = "transformers"

    def __init__(self, model: str, revision: str | None = None, device: str = "auto", batch_size: int = 32):
        import torch
        from transformers import AutoModel, AutoProcessor

        self.model_id = model
        self.device = pick_device(device)
        self.batch_size = batch_size
        path = resolve(model)
        self.model = AutoModel.from_pretrained(path, revision=revision).to(self.device).eval()
        if not (hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")):
            raise ValueError(f"{model!r} is a {type(self.model).__name__}, not a CLIP-style model with image and text towers")
        self.processor = AutoProcessor.from_pretrained(path, revision=revision)
        self.revision = commit_hash(model, revision)
        text_config = getattr(self.model.config, "text_config", None)
        self.max_tokens = int(getattr(text_config, "max_position_embeddings", 77))
        scale = getattr(self.model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0
        self.dim = int(getattr(self.model.config, "projection_dim", 0)) or self._probe_dim()
        self._torch = torch

    def _probe_dim(self) -> int:
        from PIL import Image

        return int(self.images([Image.new("RGB", (8, 8))]).shape[1])

    def images(self, images: Sequence) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for chunk in batched(list(images), self.batch_size):
                pixels = self.processor(images=[rgb(im) for im in chunk], return_tensors="pt")["pixel_values"]
                feats = _embedding(self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype)))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())  # (B, D)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts longer than the model's context (77 tokens for CLIP) are truncated, as CLIP itself would."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for chunk in batched(list(texts), self.batch_size):
                batch = self.processor.tokenizer(
                    list(chunk), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                ).to(self.device)
                feats = _embedding(self.model.get_text_features(**batch))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())  # (B, D)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text including BOS/EOS, without truncation."""
        ids = self.processor.tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]
        return [len(x) for x in ids]


def _embedding(output):
    """transformers 5 returns an output object whose `.pooler_output` is the projected embedding; 4.x a tensor."""
    return output if hasattr(output, "shape") else output.pooler_output
