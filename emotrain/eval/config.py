"""Typed settings of `emotrain eval`: which metrics, which backbones (Hub ids or local weight files), pairs, seeds.

Load with `emocurate.core.config.load(EvalConfig, yaml_path, ["fid.inception=/path/inception-2015-12-05.pt", ...])`.
Values are validated here; whether weight files exist is checked when the metric that needs them starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

METRICS = ("fid", "lpips", "emo_a", "sem_c", "sem_d", "clip_score")


def _positive(value, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1; got {value!r}")


@dataclass
class RealConfig:
    """The real images: a Hub dataset id or local folder (`save_to_disk` or parquet) with image and emotion columns."""

    dataset: str | None = None
    revision: str | None = None
    split: str = "train"
    image_column: str = "image"
    emotion_column: str = "emotion"
    """ClassLabel or string column of emotion names."""
    caption_column: str | None = "caption"
    """Captions for the CLIP score; when the dataset has no such column, "an image of {emotion}" is used (and recorded)."""
    max_per_emotion: int | None = None
    """Use at most this many real images per emotion (a seeded random subset); None = all."""

    def __post_init__(self):
        if self.max_per_emotion is not None:
            _positive(self.max_per_emotion, "real.max_per_emotion")


@dataclass
class FIDConfig:
    inception: str | None = None
    """clean-fid's torchscript Inception file `inception-2015-12-05.pt` (downloaded by hand; see the error message)."""
    batch_size: int = 64
    cache_dir: str | None = None
    """Where real-image statistics are cached; default ~/.cache/emotrain/fid_stats."""

    def __post_init__(self):
        _positive(self.batch_size, "fid.batch_size")


@dataclass
class LPIPSConfig:
    alexnet: str | None = None
    """torchvision's AlexNet weights file (`alexnet-owt-7be5be79.pth`); LPIPS's own linear layers ship in its wheel."""
    pairs: int = 1000
    """Random pairs per emotion (all pairs when there are fewer)."""
    image_size: int | None = None
    """Resize to this square size first; None = native size (all images must share it)."""
    batch_size: int = 32

    def __post_init__(self):
        _positive(self.pairs, "lpips.pairs")
        _positive(self.batch_size, "lpips.batch_size")
        if self.image_size is not None:
            _positive(self.image_size, "lpips.image_size")


@dataclass
class ClipConfig:
    """The CLIP used for Sem-D and the CLIP score (the paper: CLIP ViT-L/14)."""

    model: str = "openai/clip-vit-large-patch14"
    revision: str | None = None
    batch_size: int = 64

    def __post_init__(self):
        _positive(self.batch_size, "clip.batch_size")


@dataclass
class SemDConfig:
    pairs: int = 1000
    """Random pairs per emotion, drawn within the emotion only."""

    def __post_init__(self):
        _positive(self.pairs, "sem_d.pairs")


@dataclass
class SemCConfig:
    places365: str | None = None
    """CSAIL Places365 checkpoint file (`resnet50_places365.pth.tar`)."""
    places_arch: Literal["resnet50", "resnet18"] = "resnet50"
    imagenet: str = "microsoft/resnet-50"
    """ImageNet classifier: a transformers model (Hub id or folder) or a torchvision resnet50 weights file (.pth)."""
    imagenet_revision: str | None = None
    image_size: int = 224
    """Center-crop size for the Places365 / torchvision models (resize to size*256/224 first)."""
    batch_size: int = 64

    def __post_init__(self):
        _positive(self.image_size, "sem_c.image_size")
        _positive(self.batch_size, "sem_c.batch_size")


@dataclass
class EmoAConfig:
    """The emotion classifier, built with `emocurate.stages.classify` (default: a CLIP ViT-L/14 linear probe trained on EmoSet)."""

    backend: Literal["clip-probe", "clip-zeroshot", "hf"] = "clip-probe"
    model: str = "openai/clip-vit-large-patch14"
    revision: str | None = None
    probe: str | None = None
    """Folder made by `emocurate train-classifier` (probe.safetensors + probe_config.json); needed for clip-probe."""
    batch_size: int = 64

    def __post_init__(self):
        _positive(self.batch_size, "emo_a.batch_size")


@dataclass
class ClipScoreConfig:
    max_captions: int = 256
    """Captions per emotion the images are scored against (a seeded random subset of the real dataset's)."""

    def __post_init__(self):
        _positive(self.max_captions, "clip_score.max_captions")


@dataclass
class ReportConfig:
    paper_reference: bool = True
    """Add the paper's Table 1 rows to report.md, labelled "reported in the paper"."""
    grid_images: int = 8
    """Images per model in each emotion's sample grid."""

    def __post_init__(self):
        _positive(self.grid_images, "report.grid_images")


@dataclass
class IntervalConfig:
    """Bootstrap error bars (emotrain.eval.intervals): every model is resampled with the same indices (same seed)."""

    resamples: int = 1000
    """Bootstrap resamples for LPIPS, Emo-A, Sem-C, Sem-D (cheap: means of stored per-item values)."""
    fid_resamples: int = 100
    """Resamples for FID (each one a covariance and an eigendecomposition: ~1 s at 2048-d)."""
    level: float = 0.95

    def __post_init__(self):
        _positive(self.resamples, "intervals.resamples")
        _positive(self.fid_resamples, "intervals.fid_resamples")
        if not 0 < self.level < 1:
            raise ValueError(f"intervals.level must be in (0, 1); got {self.level}")


@dataclass
class EmoGenConfig:
    """EmoGen's published metric code, reported beside ours and labelled, to compare with published numbers."""

    enabled: bool = True
    """Also compute LPIPS on [0, 1] inputs without normalisation and LPIPS / Sem-D from few random pairs."""
    pairs: int = 10
    """Random pairs per emotion in EmoGen's diversity code."""

    def __post_init__(self):
        _positive(self.pairs, "emogen.pairs")


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    seed: int = 0
    """Seeds the pair sampling (per emotion: seed + the emotion's EmoSet index) and the real/caption subsets."""
    device: str | None = None
    """cpu, cuda, cuda:N; None = cuda when available."""
    real: RealConfig = field(default_factory=RealConfig)
    fid: FIDConfig = field(default_factory=FIDConfig)
    lpips: LPIPSConfig = field(default_factory=LPIPSConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    sem_d: SemDConfig = field(default_factory=SemDConfig)
    sem_c: SemCConfig = field(default_factory=SemCConfig)
    emo_a: EmoAConfig = field(default_factory=EmoAConfig)
    clip_score: ClipScoreConfig = field(default_factory=ClipScoreConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    intervals: IntervalConfig = field(default_factory=IntervalConfig)
    emogen: EmoGenConfig = field(default_factory=EmoGenConfig)

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {', '.join(METRICS)}; got {self.metrics}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics has duplicates: {self.metrics}")
