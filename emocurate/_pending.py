"""TEMPORARY (remove when the publish branch is merged into main): a minimal copy of its PublishConfig, so the
pipeline core can be written and tested against the agreed interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


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
