"""The paper's Stable Diffusion baseline: plain SD 1.5 prompted "an image of {emotion}", saved for `emotrain eval`.

Resumable: image i of an emotion is `{i:05d}.png`, made from its own seed (seed + i), so existing files are kept and a
rerun fills in only the missing ones with the same images it would have made. The safety checker is off (its black
images would distort every metric); results.json records that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

PROMPT = "an image of {emotion}"


def load_pipeline(base_model: str, revision: str | None = None, device: str | None = None):
    """A diffusers StableDiffusionPipeline from a Hub id, a local folder or `tiny:sd`; fp16 on GPU, fp32 on CPU."""
    import torch
    from diffusers import StableDiffusionPipeline

    from emocurate.core.tiny import resolve
    from emotrain.eval.metrics.images import pick_device

    device = pick_device(device)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(resolve(base_model), revision=revision, dtype=dtype,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate_baseline(pipe, emotion: str, n: int, seed: int, out_dir: str | Path, prompt: str = PROMPT, steps: int = 30,
                      guidance: float = 7.5, batch_size: int = 4,
                      progress: Callable[[int], None] | None = None) -> list[Path]:
    """Make images 0..n-1 of `emotion` in `out_dir` (existing ones kept); return all n paths in order."""
    import torch

    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1; got n={n}, batch_size={batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{i:05d}.png" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if progress and len(todo) < n:
        progress(n - len(todo))
    text = prompt.format(emotion=emotion)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(seed + i) for i in chunk]  # one seed per image
        images = pipe([text] * len(chunk), num_inference_steps=steps, guidance_scale=guidance, generator=generators).images
        for i, image in zip(chunk, images):
            tmp = paths[i].with_name(paths[i].stem + ".tmp.png")
            image.save(tmp)
            os.replace(tmp, paths[i])  # a file that exists is complete
        if progress:
            progress(len(chunk))
    return paths
