"""The recipe's `publish:` section and the provenance a dataset card reports: plain validated dataclasses, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REPO_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class PublishConfig:
    """The recipe's `publish:` section: what the card says about the data and how the folder is laid out."""

    pretty_name: str
    """Human-readable name in the card, e.g. 'EmoArt-style WikiArt captions'."""
    license: str = "other"
    """Hub licence id of the published data (https://huggingface.co/docs/hub/repositories-licenses)."""
    license_note: str | None = None
    """Free text about the licence, e.g. 'unknown, (c) original authors' for WikiArt."""
    license_name: str | None = None
    """With license 'other': a short id for it in the Hub metadata (license_name), e.g. 'wikiart-terms'."""
    license_link: str | None = None
    """With license 'other': where its terms are written (license_link)."""
    source_datasets: list[str] = field(default_factory=list)
    task_categories: list[str] = field(default_factory=lambda: ["text-to-image", "image-classification"])
    tags: list[str] = field(default_factory=lambda: ["emotion", "image-captioning", "coemogen", "emocurate"])
    language: list[str] = field(default_factory=lambda: ["en"])
    rows_per_shard: int = 2000
    max_shard_mb: int = 500
    """A shard also closes when its image bytes reach this size (the Hub prefers shards under ~500 MB)."""
    samples_per_emotion: int = 8
    republish_images: bool = True
    """False when the source's image licence forbids or does not state redistribution (EmoSet): writing is refused."""
    repo_id: str | None = None
    """Shown in the card's loading snippet; the folder path is shown when unset."""
    clip_stage: str = "clip_filter"
    """The `dropped_by` value of the CLIP filter's drops in records.parquet (for the histogram and drop counts)."""

    def __post_init__(self):
        if not self.pretty_name or not self.pretty_name.strip():
            raise ValueError("publish.pretty_name must be a non-empty name for the dataset card")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", self.license or ""):
            raise ValueError("publish.license must be a Hub licence id such as 'other', 'cc-by-4.0', 'mit'; "
                             f"got {self.license!r}")
        for name in ("source_datasets", "task_categories", "tags", "language"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"publish.{name} must be a list of non-empty strings; got {value!r}")
        if self.rows_per_shard < 1:
            raise ValueError(f"publish.rows_per_shard must be >= 1; got {self.rows_per_shard}")
        if self.max_shard_mb < 1:
            raise ValueError(f"publish.max_shard_mb must be >= 1; got {self.max_shard_mb}")
        if not 0 <= self.samples_per_emotion <= 64:
            raise ValueError(f"publish.samples_per_emotion must be in [0, 64]; got {self.samples_per_emotion}")
        if self.repo_id is not None and not REPO_ID_RE.match(self.repo_id):
            raise ValueError(f"publish.repo_id must look like 'user/name'; got {self.repo_id!r}")
        if not self.clip_stage:
            raise ValueError("publish.clip_stage must name the stage that records CLIP-filter drops (e.g. clip_filter)")


@dataclass
class Provenance:
    """How the rows were made, as the card reports it; the pipeline fills it from the recipe and its models."""

    models: dict[str, dict[str, str | None]]
    """stage -> {"backend", "model", "revision"}."""
    prompt: str
    thresholds: dict[str, float]
    drop_fraction: float
    seed: int
    recipe: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Shown in bold near the top, e.g. 'demo: random tiny models, captions are noise', '--ignore-robots was used'."""
    status_counts: dict[str, int] | None = None
    """Crawl status -> count, when a URL source was used."""
