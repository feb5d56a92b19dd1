"""What every sampler shares: a Stable Diffusion pipeline around existing modules and the per-image seeds.

CoEmoGen's sampler (generate.py) and the baselines' (baseline_sampler.py) both use it, so Table 1's rows differ only
by method. It loads nothing itself.
"""

from __future__ import annotations

import hashlib


def index_seed(seed: int, index: int, stream: int = 0) -> int:
    """A deterministic 63-bit seed for image `index` of a run seeded `seed` (stream separates independent draws)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()[:8], "big") >> 1


def make_pipeline(vae, text_encoder, tokenizer, unet, scheduler_config):
    """A StableDiffusionPipeline around existing modules (nothing copied), with a DPM-Solver++ scheduler for sampling."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler.from_config(scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
