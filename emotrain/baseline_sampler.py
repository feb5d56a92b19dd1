"""Load a fitted baseline run for sampling, behind the same call as CoEmoGen's `EmotionSampler`, so `emotrain generate`
and `emotrain eval --model RUN` treat every Table 1 row alike (same scheduler, steps, guidance and per-image seeds).

A baseline knows single emotions only: no fusion and no transfer prompt. It does not train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from emotrain.sampling import DEFAULT_SCHEDULER, make_scheduler


class BaselineSampler:
    """A StableDiffusionPipeline prompted `prompt.format(emotion=token)`; `emotions` and `__call__` as EmotionSampler."""

    def __init__(self, pipe, emotions: Sequence[str], prompt: str, tokens: dict[str, str], method: str,
                 scheduler: str = DEFAULT_SCHEDULER):
        self.pipe, self.emotions, self.prompt, self.tokens, self.method = pipe, list(emotions), prompt, tokens, method
        self.scheduler = scheduler
        """The name of the pipeline's scheduler (emotrain.sampling.SCHEDULERS), as EmotionSampler's."""

    def use_scheduler(self, name: str | None) -> None:
        """Sample with scheduler `name` from now on (None keeps the current one), as EmotionSampler does."""
        if name is not None and name != self.scheduler:
            self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)
            self.scheduler = name

    def __call__(self, mixes: Sequence[dict[str, float]], seeds: Sequence[int], prompt: str | None = None,
                 steps: int = 30, guidance: float = 7.5):
        import torch

        from emotrain.sampling import index_seed

        if prompt:
            raise ValueError(f"a {self.method} baseline has no emotion transfer: drop --prompt")
        texts = []
        for mix in mixes:
            chosen = [e for e, w in mix.items() if w > 0]
            if len(chosen) != 1:
                raise ValueError(f"a {self.method} baseline generates one emotion at a time; got the mix {mix}")
            texts.append(self.prompt.format(emotion=self.tokens[chosen[0]]))
        generators = [torch.Generator().manual_seed(index_seed(s, 0)) for s in seeds]  # as EmotionSampler does
        with torch.no_grad():
            return self.pipe(texts, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                             output_type="pil").images


def is_baseline_run(model_dir: str | Path) -> bool:
    config = Path(model_dir) / "config.json"
    return config.is_file() and "method" in json.loads(config.read_text())


def load_baseline(model_dir: str | Path, device: str | None = None) -> BaselineSampler:
    """The base pipeline from the run's config.json plus its learned embeddings (TI) or fine-tuned UNet (DreamBooth)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from emocurate.core.tiny import resolve
    from emotrain.sampling import make_pipeline

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    base = config["base_model"]
    pipe = StableDiffusionPipeline.from_pretrained(
        resolve(base["id"]), revision=base.get("resolved_revision") or base.get("revision"),
        safety_checker=None, requires_safety_checker=False)
    if config["method"] == "textual-inversion":
        for emotion in config["emotions"]:
            pipe.load_textual_inversion(str(model_dir / "embeddings" / f"{emotion}.safetensors"))
    elif config["method"] == "dreambooth":
        pipe.unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    else:
        raise ValueError(f"{model_dir}: unknown baseline method {config['method']!r}")
    pipe = make_pipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler.config).to(device, dtype)
    return BaselineSampler(pipe, config["emotions"], config["prompt"], config["tokens"], config["method"])
