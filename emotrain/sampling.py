"""The one sampler every generated image uses (emotrain generate, validation grids, the model card, `eval --model`,
`eval --baseline sd`, the Table 1 baselines, the exported LoRA's README): a scheduler chosen by name, steps and guidance,
recorded with them; a pipeline around existing modules; the per-image seeds. Every row of a table differs only by method.

The paper names no sampler; ours is DPM-Solver++ (diffusers' DPMSolverMultistepScheduler), 30 steps, guidance 7.5, with
the HiLoRA adapters acting on both halves of classifier-free guidance (as a stock LoRA does). It runs no pipeline.
"""

from __future__ import annotations

import hashlib

DEFAULT_SCHEDULER = "dpm-solver++"
SCHEDULERS: dict[str, str] = {
    "dpm-solver++": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
}
"""Scheduler names -> diffusers class names (each built `from_config` of the base pipeline's scheduler config)."""

ADAPTERS_ON_UNCONDITIONAL = True
"""Our sampler routes every sample's HiLoRA adapters on both CFG halves (the exported LoRA does the same in diffusers)."""


def check_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return name


def make_scheduler(name: str, config):
    """The diffusers scheduler `name` built from a pipeline's scheduler config (train timesteps, betas)."""
    import diffusers

    return getattr(diffusers, SCHEDULERS[check_scheduler(name)]).from_config(config)


def sampler_record(name: str, steps: int, guidance: float, adapters: bool | None = ADAPTERS_ON_UNCONDITIONAL) -> dict:
    """What results.json, the model card and the export README record about how images were sampled.
    `adapters`: whether adapters act on the unconditional half; None for a model without adapters (the SD baseline)."""
    return {"scheduler": check_scheduler(name), "diffusers_class": SCHEDULERS[name], "steps": int(steps),
            "guidance": float(guidance),
            "adapters_on_unconditional": "n/a (no adapters)" if adapters is None else bool(adapters)}


def describe(name: str, steps: int, guidance: float) -> str:
    """One line for cards and reports, e.g. "dpm-solver++ (DPMSolverMultistepScheduler), 30 steps, guidance 7.5"."""
    return f"{check_scheduler(name)} ({SCHEDULERS[name]}), {steps} steps, guidance {guidance:g}"


def index_seed(seed: int, index: int, stream: int = 0) -> int:
    """A deterministic 63-bit seed for image `index` of a run seeded `seed` (stream separates independent draws)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()[:8], "big") >> 1


def make_pipeline(vae, text_encoder, tokenizer, unet, scheduler_config, scheduler: str = DEFAULT_SCHEDULER):
    """A StableDiffusionPipeline around existing modules (nothing copied), sampling with `scheduler` (by name)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=make_scheduler(scheduler, scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
