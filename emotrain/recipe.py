"""The training recipe: typed, commented dataclasses loaded from YAML with `emocurate.core.config.load` (dotted overrides).

Defaults are the paper's settings (CoEmoGen, "Implementation details") where it states them; fields whose docstring
starts "Ours:" are our choices where it is silent (README "Fidelity"). It only describes a run; `train.py` executes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from emocurate.core.emotions import check_emotions


@dataclass
class ModelConfig:
    pretrained: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    """Base Stable Diffusion 1.5 pipeline (Hub id, local folder or `tiny:sd`)."""
    revision: str | None = None
    """Hub revision of the base model; the resolved commit is recorded in the run's config.json."""
    clip: str = "openai/clip-vit-large-patch14"
    """CLIP model giving the image encoder (patch tokens) and the text projection used by L_SEM."""
    clip_revision: str | None = None


@dataclass
class DataConfig:
    image_column: str = "image"
    emotion_column: str = "emotion"
    caption_column: str = "caption"
    split: str = "train"
    emotions: list[str] | None = None
    """Emotions the model learns (one LoRA each). None: every emotion present in the dataset, in EmoSet order."""
    resolution: int = 512
    """Training images are resized (short side) and center-cropped to this size. Ours: the paper gives no size; 512 is
    SD 1.5's native resolution."""
    random_flip: bool = False
    oversample: bool = True
    """Random oversampling (seeded) so every emotion has as many samples as the largest one (paper, following EmoGen)."""
    validate_images: bool = True
    """Decode every image before the first step; undecodable ones make the run stop with a report."""
    num_workers: int | None = None
    """DataLoader worker processes per rank; None: 4 on a GPU (with pinned memory), 0 on CPU."""
    cache: Literal["auto", "memory", "disk", "off"] | bool = "auto"
    """Frozen-encoder outputs computed once before training (VAE latent mean + std, CLIP image tokens, caption
    embedding; see emotrain/cache.py): disk | memory (this process's RAM, nothing written) | off (encoders every step) |
    auto (disk where it fits on data.cache_dir's filesystem, else latents + captions only, else off). YAML reads a bare
    off / on as false / true: they mean "off" / "auto"."""
    cache_dir: str | None = None
    """Where disk caches live (one folder per key); None: $EMOTRAIN_CACHE, else ~/.cache/emotrain/features. On several
    nodes it must be a filesystem every node sees."""
    cache_dtype: Literal["fp32", "fp16", "bf16"] = "fp16"
    """Storage dtype of cached tensors (EmoSet-118K's image tokens: ~62 GB in fp16, ~124 GB in fp32)."""
    cache_image_tokens: bool = True
    """false: cache latents and captions only; the CLIP image tower then runs every step (the tokens are the big part)."""
    cache_batch_size: int = 32
    """Batch size of the precompute pass."""

    def __post_init__(self) -> None:
        if isinstance(self.cache, bool):
            self.cache = "auto" if self.cache else "off"
        if self.cache_batch_size < 1:
            raise ValueError(f"data.cache_batch_size must be >= 1; got {self.cache_batch_size}")
        if self.emotions is not None:
            self.emotions = list(check_emotions(self.emotions))
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8; got {self.resolution}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {self.num_workers}")


@dataclass
class ConditioningConfig:
    mapper_hidden: int = 512
    """Hidden width of the Neuro-symbolic Mapper (paper: 512; its GELU activation is ours)."""
    d0: int = 768
    """Attention width of the Visual-perception Encoder (paper: 768). Ours: its keys are all CLIP image tokens and
    it adds a residual e_i + Attn(e_i, v_i) (see model/conditioning.py)."""
    prompt: str = "<emotion>"
    """Training prompt; `<emotion>` is the placeholder whose input embedding is e_i^v. Ours: the paper does not give
    the prompt; the token alone is what EmoGen's textual-inversion-style training uses."""

    def __post_init__(self) -> None:
        if self.mapper_hidden < 1 or self.d0 < 1:
            raise ValueError(f"mapper_hidden and d0 must be >= 1; got {self.mapper_hidden}, {self.d0}")
        if self.prompt.count("<emotion>") != 1:
            raise ValueError(f"conditioning.prompt must contain '<emotion>' exactly once; got {self.prompt!r}")


@dataclass
class HiLoRAConfig:
    rank: int = 4
    alpha: float | None = None
    """LoRA scale numerator (scale = alpha / rank); None means alpha = rank (scale 1)."""
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """Ours: the paper does not name the U-Net layers; these are attn1 and attn2's projections in every block."""
    emotion_loras: bool = True
    """Ablation: false removes the emotion-specific LoRAs."""
    polarity_loras: bool = True
    """Ablation: false removes the polarity-shared LoRAs."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"hilora.rank must be >= 1; got {self.rank}")
        if not (self.emotion_loras or self.polarity_loras):
            raise ValueError("hilora.emotion_loras and hilora.polarity_loras cannot both be false (nothing to train)")
        if not self.target_modules:
            raise ValueError("hilora.target_modules is empty")


@dataclass
class ClustersConfig:
    """The emotion clusters v_i is drawn from at inference (see emotrain/model/clusters.py). The paper: "a Gaussian
    distribution" per emotion; its form is our choice: a low-rank (PCA) Gaussian over whole token sets."""

    components: int = 16
    """Principal directions per emotion (0: the per-token diagonal Gaussian, whose draws do not look like token
    sets). Each costs T*Dv half floats in emotion_clusters.safetensors (0.5 MB for ViT-L/14)."""
    sample_images: int = 128
    """Token sets per emotion (seeded pick) the directions are estimated from; the mean uses every image."""

    def __post_init__(self) -> None:
        if self.components < 0:
            raise ValueError(f"clusters.components must be >= 0; got {self.components}")
        if self.sample_images < 2 and self.components:
            raise ValueError(f"clusters.sample_images must be >= 2 to estimate directions; got {self.sample_images}")


@dataclass
class LossConfig:
    semantic: bool = True
    """Ablation: false trains with L_LDM alone."""
    semantic_type: Literal["cosine", "mae", "mse", "kl"] = "cosine"
    semantic_weight: float = 1.0
    """lambda in L = L_LDM + lambda * L_SEM. Ours: the paper combines the two losses without stating a weight."""

    def __post_init__(self) -> None:
        if self.semantic_weight < 0:
            raise ValueError(f"loss.semantic_weight must be >= 0; got {self.semantic_weight}")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-2
    eps: float = 1e-8
    batch_size: int = 1
    """Per-device batch size (paper: 1)."""
    gradient_accumulation: int = 1
    max_steps: int = 130_000
    """Optimizer steps (paper: 130,000 iterations)."""
    max_grad_norm: float | None = None
    """Gradient clipping; None (paper) disables it."""
    adam_8bit: bool = False
    """bitsandbytes' 8-bit AdamW (optimizer state in 8 bits; needs `pip install bitsandbytes` and, for speed, a GPU)."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0; got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1); got {self.betas}")
        if self.batch_size < 1 or self.gradient_accumulation < 1 or self.max_steps < 1:
            raise ValueError("optim.batch_size, optim.gradient_accumulation and optim.max_steps must be >= 1")


@dataclass
class RunConfig:
    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Frozen models run in this dtype; trained weights stay float32. Ours: the paper states no precision (the
    shipped recipes use bf16)."""
    gradient_checkpointing: bool = False
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    validate_every: int = 5000
    """Steps between validation grids (one image per emotion, fixed seeds); 0 disables."""
    log_every: int = 10
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    scheduler: str = "dpm-solver++"
    """The sampler of validation grids, the card's samples and `emotrain generate` on this run (emotrain/sampling.py
    names: dpm-solver++, ddim, pndm, euler, euler-a). Our choice: the paper names no sampler."""
    inference_steps: int = 30
    guidance: float = 7.5
    samples_per_emotion: int = 4
    """Images per emotion in the model card's sample grids (0: no samples)."""
    cluster_batch_size: int = 32
    """Batch size of the CLIP image-embedding pass that builds the emotion clusters."""
    allow_tf32: bool = True
    """On Ampere+ GPUs, TF32 matmuls for the frozen models (faster; trained weights stay float32)."""
    compile_unet: bool = False
    """torch.compile the UNet (the first steps compile; later ones run faster on a GPU)."""
    channels_last: bool = False
    """UNet (and VAE) weights and activations in channels-last memory layout (often faster convolutions on GPUs)."""
    cpu_threads: int | None = None
    """torch intra-op threads when training on CPU (None: torch's default). Tiny models on busy shared cores run
    many times faster with 1."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"run.checkpoint_every must be >= 1; got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"run.keep_checkpoints must be >= 1; got {self.keep_checkpoints}")
        from emotrain.sampling import check_scheduler

        check_scheduler(self.scheduler)
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"run.cpu_threads must be >= 1 or null; got {self.cpu_threads}")
        if self.validate_every < 0 or self.log_every < 1 or self.inference_steps < 1 or self.samples_per_emotion < 0:
            raise ValueError("run.validate_every/samples_per_emotion must be >= 0, run.log_every/inference_steps >= 1")


@dataclass
class PaperConfig:
    """Where a recipe sits in the paper; `emotrain reproduce` reads it, training does not."""

    row: str | None = None
    """The paper's table row this recipe reproduces, e.g. "Table 1: w/o L_SEM" (the reproduction report's label)."""
    caption_prompt: str = "emotion-one-sentence"
    """The emocurate caption prompt the training dataset must be captioned with (Table 2(a) varies it)."""


@dataclass
class TrainRecipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    emotion_input: Literal["onehot", "learnable", "text"] = "onehot"
    """Ablation (Table 2b): one-hot + Neuro-symbolic Mapper | a learnable vector per emotion | the frozen word embedding."""
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    hilora: HiLoRAConfig = field(default_factory=HiLoRAConfig)
    clusters: ClustersConfig = field(default_factory=ClustersConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainRecipe:
    """Read a training recipe (YAML) with dotted `key=value` overrides; unknown keys or bad values raise ConfigError."""
    from emocurate.core.config import load

    return load(TrainRecipe, path, overrides)


def loader_workers(data: DataConfig, on_gpu: bool) -> int:
    """`data.num_workers`, or its default: 4 DataLoader workers on a GPU, 0 on CPU (tiny models decode faster inline)."""
    return data.num_workers if data.num_workers is not None else (4 if on_gpu else 0)
