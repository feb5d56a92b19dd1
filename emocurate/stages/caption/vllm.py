"""The `vllm` caption backend: offline batched generation with vLLM's `LLM` engine on this machine's GPUs.

Prompts, image downscaling and caption cleaning are the other backends' (emocurate.stages.caption.contract). It holds one engine per
process; across nodes, run `vllm serve` on each and use the `openai` backend (README, "Scaling out"). Needs the `vllm` extra.
"""

from __future__ import annotations

import logging
from typing import Any

from emocurate.stages.caption.contract import CaptionConfig, CaptionResult, check_one_emotion_per_image, downscale, finish, prompt_text
from emocurate.core.loading import commit_hash
from emocurate.core.tiny import resolve

log = logging.getLogger(__name__)


def conversation(image, prompt: str) -> list[dict]:
    """One chat with one user turn: the image, then the prompt (the order Qwen2.5-VL's and LLaVA's templates expect)."""
    return [{"role": "user", "content": [{"type": "image_pil", "image_pil": image}, {"type": "text", "text": prompt}]}]


def engine_args(cfg: CaptionConfig) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments from the caption config; `caption.vllm_args` (a mapping) overrides any of them."""
    args: dict[str, Any] = dict(
        model=resolve(cfg.model), revision=cfg.revision, seed=cfg.seed,
        dtype=cfg.dtype,  # "auto" | "float32" | "float16" | "bfloat16": vLLM takes the same names
        limit_mm_per_prompt={"image": 1},
    )
    args.update(getattr(cfg, "vllm_args", None) or {})
    return args


class VLLMCaptioner:
    """A vLLM engine with the model's own chat template; every request samples with `cfg.seed` (order-independent)."""

    backend = "vllm"

    def __init__(self, cfg: CaptionConfig):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ImportError(
                "caption.backend=vllm needs vLLM on a GPU machine: pip install 'coemogen-toolkit[vllm]' "
                f"(or use caption.backend=transformers / openai): {err}"
            ) from err
        self.cfg = cfg
        self.model_id, self.revision = cfg.model, commit_hash(cfg.model, cfg.revision)
        self.llm = LLM(**engine_args(cfg))
        self.sampling = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_new_tokens, seed=cfg.seed)

    def prompt_text(self, emotion: str | None) -> str:
        return prompt_text(self.cfg.prompt, emotion)

    def caption(self, images: list, emotions: list[str | None]) -> list[CaptionResult]:
        """All images go to the engine at once; vLLM batches them itself (continuous batching)."""
        check_one_emotion_per_image(images, emotions)
        results: list[CaptionResult | None] = [None] * len(images)
        todo, chats = [], []
        for i, (image, emotion) in enumerate(zip(images, emotions)):
            try:
                if image is None:
                    raise ValueError("no image")
                chats.append(conversation(downscale(image, self.cfg.max_image_side), self.prompt_text(emotion)))
                todo.append(i)
            except Exception as err:  # noqa: BLE001  recorded for this image only
                results[i] = CaptionResult(None, f"{type(err).__name__}: {err}", None)
        for i, raw in zip(todo, self.generate(chats)):
            results[i] = raw if isinstance(raw, CaptionResult) else finish(raw, self.cfg.one_sentence)
        return results  # type: ignore[return-value]

    def generate(self, chats: list[list[dict]]) -> list[str | None | CaptionResult]:
        """Raw text per chat; if the batch fails, each chat is retried alone so one bad input costs only itself."""
        if not chats:
            return []
        try:
            return [_text(out) for out in self.llm.chat(chats, self.sampling, use_tqdm=False)]
        except Exception as err:  # noqa: BLE001
            log.warning("vLLM batch of %d failed (%s); retrying one by one", len(chats), err)
        out: list[str | None | CaptionResult] = []
        for chat in chats:
            try:
                out.append(_text(self.llm.chat([chat], self.sampling, use_tqdm=False)[0]))
            except Exception as err:  # noqa: BLE001
                out.append(CaptionResult(None, f"vllm: {type(err).__name__}: {err}", None))
        return out


def _text(request_output) -> str | None:
    return request_output.outputs[0].text if request_output.outputs else None
