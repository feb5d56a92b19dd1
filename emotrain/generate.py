"""Sampling from a trained run: one emotion, an emotion inside a neutral prompt (transfer, paper Fig. 8), or a weighted
mix of emotions (fusion, Fig. 9: emotion representations AND adapter weights are combined).

Images are written one file per index with a deterministic per-index seed, so a rerun skips what exists. It does not train.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Callable, Sequence

from emotrain.model.conditioning import PLACEHOLDER
from emotrain.sampling import DEFAULT_SCHEDULER, index_seed, make_pipeline

GRID_MAX = 64


def transfer_prompt(prompt: str | None, default: str = PLACEHOLDER) -> str:
    """The conditioning prompt: the training prompt, or a neutral prompt with the emotion token (appended if absent)."""
    if not prompt:
        return default
    return prompt if PLACEHOLDER in prompt else f"{prompt.strip().rstrip(',')}, {PLACEHOLDER}"


class EmotionSampler:
    """A stock StableDiffusionPipeline driven by CoEmoGen's emotion condition and HiLoRA routing.

    Works on the training UNet too (validation grids reuse it in eval mode: no second copy in memory).
    """

    def __init__(self, pipe, mapper, encoder, clusters, emotions: Sequence[str], prompt: str = PLACEHOLDER, autocast=None,
                 scheduler: str = DEFAULT_SCHEDULER):
        self.pipe, self.mapper, self.encoder, self.clusters = pipe, mapper, encoder, clusters
        self.emotions = list(emotions)
        self.prompt = prompt
        self.autocast = autocast
        self.scheduler = scheduler
        """The name of the pipeline's scheduler (emotrain.sampling.SCHEDULERS); `use_scheduler` changes it."""

    def use_scheduler(self, name: str | None) -> None:
        """Sample with scheduler `name` from now on (None keeps the current one)."""
        from emotrain.sampling import make_scheduler

        if name is not None and name != self.scheduler:
            self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)
            self.scheduler = name

    def emotion_vectors(self, mixes: Sequence[dict[str, float]], seeds: Sequence[int]):
        """e^v (B, D) per sample: the weighted sum over the mix of encoder(mapper(one-hot_k), v_k ~ cluster_k)."""
        import torch

        from emotrain.model.conditioning import emotion_weights

        device = next(self.encoder.parameters()).device
        rows = []
        for mix, seed in zip(mixes, seeds):
            weights = emotion_weights(self.emotions, mix)
            parts = []
            for k, emotion in enumerate(self.emotions):
                if weights[k] > 0:
                    gen = torch.Generator().manual_seed(index_seed(seed, k, stream=1))
                    v = self.clusters.sample(emotion, 1, generator=gen).to(device)  # (1, T, Dv)
                    onehot = torch.nn.functional.one_hot(torch.tensor([k]), len(self.emotions)).float().to(device)
                    parts.append(weights[k] * self.encoder(self.mapper(onehot), v).float())
            rows.append(torch.stack(parts).sum(0))
        return torch.cat(rows)  # (B, D)

    def __call__(self, mixes: Sequence[dict[str, float]], seeds: Sequence[int], prompt: str | None = None,
                 steps: int = 30, guidance: float = 7.5):
        import contextlib

        import torch

        from emotrain.model.conditioning import emotion_weights, encode_with_emotion
        from emotrain.model.hilora import routing

        pipe = self.pipe
        device = pipe.unet.device
        weights = torch.stack([emotion_weights(self.emotions, m) for m in mixes]).to(device)  # (B, E)
        with torch.no_grad(), (self.autocast or contextlib.nullcontext)():
            cond, _ = encode_with_emotion(pipe.text_encoder, pipe.tokenizer, self.emotion_vectors(mixes, seeds),
                                          transfer_prompt(prompt, self.prompt))  # (B, L, D)
            empty = pipe.tokenizer([""] * len(mixes), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                   return_tensors="pt").input_ids.to(device)
            uncond = pipe.text_encoder(input_ids=empty).last_hidden_state  # (B, L, D)
            cfg = guidance > 1
            # The pipeline runs [uncond; cond] in one batch under CFG: both halves get the sample's adapters
            # (emotrain.sampling.ADAPTERS_ON_UNCONDITIONAL), as a stock LoRA acts on both.
            with routing(pipe.unet, torch.cat([weights, weights]) if cfg else weights):
                generators = [torch.Generator().manual_seed(index_seed(s, 0)) for s in seeds]
                return pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=steps,
                            guidance_scale=guidance, generator=generators, output_type="pil").images


def load_run(model_dir: str | Path, device: str | None = None) -> EmotionSampler:
    """Load a trained run folder (base model from its config.json, HiLoRA, Mapper, Encoder, clusters) for sampling."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from emocurate.core.config import from_dict
    from emocurate.core.tiny import resolve
    from emotrain.model.clusters import EmotionClusters
    from emotrain.model.conditioning import NeuroSymbolicMapper, VisualPerceptionEncoder
    from emotrain.model.hilora import add_hilora, load_hilora_state_dict
    from emotrain.recipe import TrainRecipe

    from emotrain.baseline_sampler import is_baseline_run, load_baseline

    model_dir = Path(model_dir)
    if is_baseline_run(model_dir):  # a Table 1 baseline (`emotrain baseline fit`): sampled the same way
        return load_baseline(model_dir, device)
    if not (model_dir / "config.json").is_file() or not (model_dir / "hilora.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir} is not a trained emotrain run (needs config.json and hilora.safetensors)")
    config = json.loads((model_dir / "config.json").read_text())
    recipe = from_dict(TrainRecipe, config["recipe"])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    base = config["base_model"]
    pipe = StableDiffusionPipeline.from_pretrained(
        resolve(base["id"]), revision=base.get("resolved_revision") or base.get("revision"),
        safety_checker=None, requires_safety_checker=False,
    )
    h = recipe.hilora
    add_hilora(pipe.unet, config["emotions"], rank=h.rank, alpha=h.alpha, target_modules=tuple(h.target_modules),
               emotion_loras=h.emotion_loras, polarity_loras=h.polarity_loras)
    load_hilora_state_dict(pipe.unet, load_file(str(model_dir / "hilora.safetensors")))
    scheduler = recipe.run.scheduler
    pipe = make_pipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler.config,
                         scheduler).to(device, dtype)
    mapper = NeuroSymbolicMapper.from_pretrained(model_dir / "mapper").to(device)
    encoder = VisualPerceptionEncoder.from_pretrained(model_dir / "encoder").to(device)
    clusters = EmotionClusters.load(model_dir / "emotion_clusters.safetensors")
    return EmotionSampler(pipe, mapper.eval(), encoder.eval(), clusters, config["emotions"], recipe.conditioning.prompt,
                          scheduler=scheduler)


@functools.lru_cache(maxsize=1)
def _cached_run(model_dir: str, stamp: float, device: str | None) -> EmotionSampler:
    return load_run(model_dir, device)


def cached_run(model_dir: str | Path, device: str | None = None) -> EmotionSampler:
    """`load_run`, kept for the next call with the same run and device (e.g. one `generate` call per emotion).
    A retrained run (newer config.json) is loaded afresh; only one run is kept."""
    path = Path(model_dir).resolve()
    stamp = (path / "config.json").stat().st_mtime if (path / "config.json").exists() else 0.0  # written last
    return _cached_run(str(path), stamp, device)


def parse_mix(text: str) -> dict[str, float]:
    """'amusement:0.5,awe:0.5' -> {'amusement': 0.5, 'awe': 0.5}; a bare name has weight 1."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition(":")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"bad mix entry {part!r}: write emotion:weight, e.g. amusement:0.5,awe:0.5") from None
    if not mix:
        raise ValueError("empty mix: write emotion:weight pairs, e.g. amusement:0.5,awe:0.5")
    return mix


def file_stem(emotion: str | dict[str, float], seed: int, prompt: str | None) -> str:
    """`awe_s0`, `amusement-0.5+awe-0.5_s0`, `awe_a-city-street_s0`: files of different requests never collide."""
    tag = emotion if isinstance(emotion, str) else "+".join(f"{k}-{v:g}" for k, v in emotion.items())
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] if prompt else ""
    return f"{tag}_{slug}_s{seed}" if slug else f"{tag}_s{seed}"


def save_grid(images, path: Path) -> Path:
    """A near-square grid PNG of up to GRID_MAX images."""
    from PIL import Image

    images = list(images)[:GRID_MAX]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, image in enumerate(images):
        grid.paste(image, ((i % cols) * w, (i // cols) * h))
    _save_png(grid, path)
    return path


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.rename(path)  # a .png that exists is complete


def generate(
    model_dir: str | Path,
    emotion: str | dict[str, float],
    n: int,
    seed: int,
    out_dir: str | Path,
    prompt: str | None = None,
    steps: int = 30,
    guidance: float = 7.5,
    batch_size: int = 4,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    sampler: EmotionSampler | None = None,
    scheduler: str | None = None,
) -> list[Path]:
    """Write n images (`{stem}_{i:05d}.png`) into out_dir plus a grid `grids/{stem}.png`; return the n image paths.

    The grid sits in a subfolder so that out_dir holds only generated images (eval reads every *.png there).

    `emotion` is a name or a {name: weight} mix (fusion); `prompt` a neutral prompt for emotion transfer. Image i uses
    seed `index_seed(seed, i)`, so indices already on disk are skipped and a rerun completes the set identically.
    `progress(done, total)` is called after each batch. `sampler` reuses an already loaded model; otherwise the
    last loaded run is reused when model_dir and device are the same (see `cached_run`). `scheduler` (a name in
    emotrain.sampling.SCHEDULERS) defaults to the run's recipe `run.scheduler` (the one its card samples used).
    """
    from PIL import Image

    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1; got n={n}, batch_size={batch_size}")
    if scheduler is not None:
        from emotrain.sampling import check_scheduler

        check_scheduler(scheduler)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = file_stem(emotion, seed, prompt)
    paths = [out / f"{stem}_{i:05d}.png" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    mix = {emotion: 1.0} if isinstance(emotion, str) else dict(emotion)
    if todo:
        sampler = sampler or cached_run(model_dir, device)
        sampler_emotions = set(sampler.emotions)
        unknown = [e for e in mix if e not in sampler_emotions]
        if unknown:
            raise ValueError(f"emotion(s) {unknown} not in this model; it knows: {', '.join(sampler.emotions)}")
        sampler.use_scheduler(scheduler)
    done = n - len(todo)
    if progress:
        progress(done, n)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = sampler([mix] * len(chunk), [index_seed(seed, i) for i in chunk], prompt, steps, guidance)
        for i, image in zip(chunk, images):
            _save_png(image, paths[i])
        done += len(chunk)
        if progress:
            progress(done, n)
    (out / "grids").mkdir(exist_ok=True)
    save_grid([Image.open(p).convert("RGB") for p in paths[:GRID_MAX]], out / "grids" / f"{stem}.png")
    return paths
