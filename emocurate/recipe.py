"""The curation recipe: what to read, which emotions to keep, and each stage's config, as typed dataclasses.

Loaded from YAML with `emocurate.core.config.load(CurateRecipe, path, overrides)`; it validates values, it runs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from emocurate.stages.caption.contract import CaptionConfig
from emocurate.stages.classify import ClassifyConfig
from emocurate.stages.clip_filter import ClipFilterConfig
from emocurate.core.config import ConfigError, load
from emocurate.crawl.fetch import CrawlConfig
from emocurate.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from emocurate.core.emotions import EMOTIONS, check_emotions
from emocurate.publish.config import PublishConfig


_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")

DECISION_KEYS = (
    "emotions",
    "dedup",
    "apply_min_confidence_to_labelled",
    "classify.min_confidence",
    "clip_filter.drop_fraction",
)
"""Keys `emocurate refilter` may change: they act on stored scores, never on models or inputs."""


@dataclass
class RayStageConfig:
    num_gpus: float = 1.0
    """GPUs each actor of this stage holds its model on (0.5 puts two actors on one GPU). Ignored (0) when the cluster
    has no GPU, when the stage's `device` is 'cpu', and for the openai caption backend (no local model)."""
    actors: int = 0
    """Actor pool size; 0 = as many as the cluster's GPUs allow (cluster GPUs / num_gpus), or 1 without GPUs."""
    num_cpus: float = 1.0
    """CPUs each actor reserves (it decodes its shard's images)."""

    def __post_init__(self):
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, (int, float)) or self.num_gpus < 0:
            raise ValueError(f"num_gpus must be a number >= 0; got {self.num_gpus!r}")
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 0:
            raise ValueError(f"actors must be an integer >= 0 (0 = automatic); got {self.actors!r}")
        if isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, (int, float)) or self.num_cpus <= 0:
            raise ValueError(f"num_cpus must be a number > 0; got {self.num_cpus!r}")


@dataclass
class RayConfig:
    """How `--executor ray` places the stages; the local executor ignores it."""

    classify: RayStageConfig = field(default_factory=RayStageConfig)
    caption: RayStageConfig = field(default_factory=RayStageConfig)
    clip_filter: RayStageConfig = field(default_factory=RayStageConfig)
    ingest_in_flight: int = 0
    """Ingest shards decoded at once as Ray tasks; 0 = twice the cluster's CPUs."""

    def __post_init__(self):
        if isinstance(self.ingest_in_flight, bool) or not isinstance(self.ingest_in_flight, int) or self.ingest_in_flight < 0:
            raise ValueError(f"ray.ingest_in_flight must be an integer >= 0 (0 = automatic); got {self.ingest_in_flight!r}")


@dataclass
class CurateRecipe:
    sources: list[str] = field(default_factory=list)
    """Source specs read in order: `folder:PATH`, `hf:REPO_OR_PATH[:split]`, `wikiart[:REPO_OR_PATH]`, `emoset:PATH[:split]`,
    `urls:FILE`, `demo`. The first occurrence of an image (in this order) wins over later duplicates."""
    emotions: list[str] = field(default_factory=lambda: list(EMOTIONS))
    """Emotions the dataset keeps (a subset of Mikels' eight); items whose emotion is outside it are dropped by classify."""
    limit: Optional[int] = None
    """Read at most this many input items in total (across all sources, in order); None reads everything."""
    shard_size: int = 256
    """Items per shard: the unit of work, of atomic writes and of resume."""
    seed: int = 0
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels are dropped by ingest as too large (decompression-bomb guard)."""
    max_image_side: int = DEFAULT_MAX_SIDE
    decode_workers: int = 4
    """Threads that decode images at ingest to check them (Pillow releases the GIL while decoding)."""
    devices: list[str] = field(default_factory=lambda: ["auto"])
    """Where the local executor runs the model stages whose own `device` is auto. `auto`: one worker process per visible
    CUDA device when there are several, each holding its own copy of the model; otherwise all in this process, as before.
    Or a list such as [cuda:0, cuda:1] (a device may repeat: [cpu, cpu] runs two CPU workers). `--executor ray` places
    stages by `ray:` instead."""
    dedup: bool = True
    """Drop later copies of byte-identical files (same sha256) as `dedup`."""
    apply_min_confidence_to_labelled: bool = False
    """Whether `classify.min_confidence` also drops items with a known label (folder emotion dirs, EmoSet); by default a
    known label is trusted and the classifier's scores are only stored."""
    report: bool = False
    """Write the browsable HTML report (RUN/report/index.html, `emocurate report`) after every build and refilter."""
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    clip_filter: ClipFilterConfig = field(default_factory=ClipFilterConfig)
    publish: PublishConfig = field(default_factory=lambda: PublishConfig(pretty_name="Emotion-captioned images"))
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    """How `urls:` sources are fetched (concurrency, timeouts, robots, SSRF guard); unused by other sources."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Where `emocurate build --executor ray` runs each stage (GPUs per actor, pool sizes); the local executor ignores it."""

    def __post_init__(self):
        self.emotions = list(check_emotions(self.emotions))
        if not self.sources:
            raise ValueError("sources is empty: list at least one source, e.g. sources: [folder:/data/images] or --source")
        for spec in self.sources:
            from emocurate.sources import parse_spec

            parse_spec(spec)  # raises a ValueError that names the bad spec
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (or null for no limit); got {self.limit}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1; got {self.shard_size}")
        if self.decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1; got {self.decode_workers}")
        if self.devices != ["auto"]:
            if not self.devices:
                raise ValueError("devices is empty: use devices=auto, or list devices, e.g. devices=[cuda:0,cuda:1]")
            for device in self.devices:
                if not isinstance(device, str) or not _DEVICE.match(device):
                    raise ValueError(f"devices must be auto or a list of cpu, cuda, cuda:N, mps (e.g. [cuda:0, cuda:1]); "
                                     f"got {device!r} in {self.devices}")
        if self.max_image_pixels < 1 or self.max_image_side < 1:
            raise ValueError("max_image_pixels and max_image_side must be >= 1")


def load_recipe(path: str | Path | None, overrides: Iterable[str] = ()) -> CurateRecipe:
    """Load a recipe YAML with dotted overrides; any unknown key or bad value raises ConfigError before work starts."""
    return load(CurateRecipe, path, overrides)


def check_refilter_overrides(overrides: Iterable[str]) -> None:
    """`refilter` may only change decision keys; anything else needs a model run (use `build` with a new --out)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in DECISION_KEYS:
            raise ConfigError(
                f"refilter cannot change {key!r}: it only re-applies decisions to stored scores. "
                f"Keys it can change: {', '.join(DECISION_KEYS)}"
            )
