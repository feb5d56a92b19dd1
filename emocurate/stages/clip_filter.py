"""CLIP image-caption agreement: cosine similarity of image and caption embeddings, and the per-emotion bottom-fraction cut.

Scores are computed here and stored by the pipeline; `bottom_fraction_mask` turns stored scores into drop decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from emocurate.core.loading import batched, check_device, check_positive, pick_device, rgb

BACKENDS = ("transformers", "open_clip")
CLIP_MAX_TOKENS = 77
"""CLIP's (and SD 1.5's text encoder's) context: longer captions are cut."""


@dataclass
class ClipFilterConfig:
    backend: Literal["transformers", "open_clip"] = "transformers"
    model: str = "openai/clip-vit-large-patch14"
    """transformers: a CLIP Hub id or folder; open_clip: an architecture name such as ViT-L-14 (or hf-hub:ORG/NAME)."""
    pretrained: str | None = None
    """open_clip only: a pretrained tag (e.g. openai, laion2b_s32b_b82k) or a local checkpoint file."""
    revision: str | None = None
    """transformers only: Hub revision of `model`."""
    drop_fraction: float = 0.2
    """Within each emotion, drop this fraction of records with the lowest CLIP score (paper: 0.2)."""
    batch_size: int = 32
    device: str = "auto"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"clip_filter.backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        frac = self.drop_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac < 1.0:
            raise ValueError(f"clip_filter.drop_fraction must be in [0, 1); got {frac}")
        check_positive(self.batch_size, "clip_filter.batch_size")
        check_device(self.device, "clip_filter.device")
        if self.backend == "open_clip":
            if "/" in self.model and not self.model.startswith("hf-hub:"):
                raise ValueError(
                    f"clip_filter.model={self.model!r} looks like a transformers id; with backend open_clip give an "
                    "architecture name such as ViT-L-14 (and clip_filter.pretrained=openai)"
                )
            if not self.model.startswith("hf-hub:") and not self.pretrained:
                raise ValueError("clip_filter.backend=open_clip needs clip_filter.pretrained (a tag such as openai, or a checkpoint file)")
            if self.revision is not None:
                raise ValueError("clip_filter.revision applies to the transformers backend; open_clip weights are named by clip_filter.pretrained")
        elif self.pretrained is not None:
            raise ValueError("clip_filter.pretrained applies to the open_clip backend; for transformers use clip_filter.model and revision")


class ClipScorer:
    """Cosine similarity between each image and its text, from either backend's encoder."""

    def __init__(self, encoder, model_id: str, revision: str | None):
        self.encoder, self.model_id, self.revision, self.backend = encoder, model_id, revision, encoder.backend

    def score(self, images: list, texts: list[str]) -> np.ndarray:
        """(N,) float32 cosine similarities; texts are truncated to the model's context (77 tokens for CLIP)."""
        if len(images) != len(texts):
            raise ValueError(f"score() needs one text per image; got {len(images)} images and {len(texts)} texts")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"score() needs a caption string for every image; items {bad[:5]} are {type(texts[bad[0]]).__name__}")
        if not images:
            return np.zeros((0,), np.float32)
        image_emb, text_emb = self.encoder.images(images), self.encoder.texts(texts)  # (N, D) each, unit vectors
        return (image_emb * text_emb).sum(axis=1).astype(np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text including BOS/EOS, untruncated: more than `max_tokens` means CLIP cuts it."""
        return self.encoder.count_tokens(texts)

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens


def load_scorer(cfg: ClipFilterConfig) -> ClipScorer:
    if cfg.backend == "transformers":
        from emocurate.stages.clip_embed import HFClipEncoder

        encoder = HFClipEncoder(cfg.model, cfg.revision, cfg.device, cfg.batch_size)
        return ClipScorer(encoder, cfg.model, encoder.revision)
    encoder = OpenClipEncoder(cfg.model, cfg.pretrained, cfg.device, cfg.batch_size)
    return ClipScorer(encoder, cfg.model, cfg.pretrained)


class OpenClipEncoder:
    """open_clip model + its preprocessing and tokenizer; `revision` is the pretrained tag or checkpoint path."""

    backend = "open_clip"

    def __init__(self, model: str, pretrained: str | None, device: str = "auto", batch_size: int = 32):
        import open_clip
        import torch

        self.device = pick_device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained, device=self.device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.max_tokens = int(getattr(self.tokenizer, "context_length", CLIP_MAX_TOKENS))
        self.batch_size, self._torch = batch_size, torch

    def images(self, images: Sequence) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for chunk in batched(list(images), self.batch_size):
                pixels = torch.stack([self.preprocess(rgb(im)) for im in chunk]).to(self.device)  # (B, 3, H, W)
                out.append(torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for chunk in batched(list(texts), self.batch_size):
                tokens = self.tokenizer(list(chunk)).to(self.device)  # (B, context_length), truncated with EOT kept
                out.append(torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if hasattr(self.tokenizer, "encoder") and hasattr(self.tokenizer, "encode"):  # open_clip's SimpleTokenizer
            return [len(self.tokenizer.encode(t)) + 2 for t in texts]  # + start/end of text
        inner = self.tokenizer.tokenizer  # HFTokenizer wraps a transformers tokenizer
        return [len(ids) for ids in inner(list(texts), truncation=False)["input_ids"]]


def bottom_fraction_mask(scores: np.ndarray, groups: Sequence[str], fraction: float, ids: Sequence[str]) -> np.ndarray:
    """True where a record is dropped: in each group, the floor(fraction * n) lowest scores, ties broken by id.

    n counts the group's finite scores. A NaN score (no caption, failed scoring) is always True: a record that could
    not be scored is never kept by accident, and it does not shrink or grow the cut among the scored ones.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not (len(scores) == len(groups) == len(ids)):
        raise ValueError(f"scores, groups and ids must have one entry per record; got {len(scores)}, {len(groups)}, {len(ids)}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"clip_filter.drop_fraction must be in [0, 1); got {fraction}")
    drop = np.isnan(scores)
    by_group: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        if not drop[i]:
            by_group.setdefault(group, []).append(i)
    for members in by_group.values():
        k = math.floor(fraction * len(members) + 1e-9)  # + eps: 0.2 * 10 must be 2, not 1.9999...
        for i in sorted(members, key=lambda i: (scores[i], ids[i]))[:k]:
            drop[i] = True
    return drop
