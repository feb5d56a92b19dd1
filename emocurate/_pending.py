"""TEMPORARY (remove when curate-models and publish are merged into main): minimal copies of their config dataclasses
and `bottom_fraction_mask`, so the pipeline core can be written and tested against the agreed interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np


@dataclass
class ClassifyConfig:
    backend: Literal["clip-zeroshot", "clip-probe", "hf"] = "clip-zeroshot"
    model: str = "openai/clip-vit-large-patch14"
    revision: Optional[str] = None
    probe: Optional[str] = None
    min_confidence: float = 0.75
    batch_size: int = 32
    device: str = "auto"
    prompts: dict = field(default_factory=dict)

    def __post_init__(self):
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1]; got {self.min_confidence}")


@dataclass
class CaptionConfig:
    backend: Literal["transformers", "openai"] = "transformers"
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    revision: Optional[str] = None
    prompt: str = "emotion-one-sentence"
    max_new_tokens: int = 77
    max_image_side: int = 768
    batch_size: int = 8
    temperature: float = 0.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 5


@dataclass
class ClipFilterConfig:
    backend: Literal["transformers", "open_clip"] = "transformers"
    model: str = "openai/clip-vit-large-patch14"
    pretrained: Optional[str] = None
    revision: Optional[str] = None
    drop_fraction: float = 0.2
    batch_size: int = 32
    device: str = "auto"

    def __post_init__(self):
        if not 0 <= self.drop_fraction < 1:
            raise ValueError(f"drop_fraction must be in [0, 1); got {self.drop_fraction}")


@dataclass
class PublishConfig:
    pretty_name: str
    license: str = "other"
    license_note: Optional[str] = None
    republish_images: bool = True
    source_datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    rows_per_shard: int = 1000
    samples_per_emotion: int = 8


def bottom_fraction_mask(scores, groups, fraction, ids):
    """True = drop: the floor(fraction * n) lowest scores within each group, ties broken by id."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    ids = np.asarray(ids, dtype=object)
    mask = np.zeros(len(scores), dtype=bool)
    for g in set(groups.tolist()):
        idx = np.flatnonzero(groups == g)
        order = sorted(idx, key=lambda i: (scores[i], ids[i]))
        mask[order[: int(np.floor(fraction * len(idx)))]] = True
    return mask
