"""The `transformers` caption backend: any image-text-to-text chat model, batched generation with left padding.

Greedy (deterministic) at temperature 0, seeded sampling above it. Prompts and cleaning come from contract.py.
"""

from __future__ import annotations

import logging

from emocurate.stages.caption.contract import CaptionConfig, CaptionResult, check_one_emotion_per_image, downscale, finish, prompt_text
from emocurate.core.loading import batched, commit_hash, pick_device, pick_dtype
from emocurate.core.tiny import resolve

log = logging.getLogger(__name__)


class TransformersCaptioner:
    """Any `AutoModelForImageTextToText` chat model with its processor's chat template; batched, left-padded."""

    backend = "transformers"

    def __init__(self, cfg: CaptionConfig):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg, self._torch = cfg, torch
        path = resolve(cfg.model)
        self.device = pick_device(cfg.device)
        self.processor = AutoProcessor.from_pretrained(path, revision=cfg.revision)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batch generation continues from the right edge
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"caption.model={cfg.model} has no chat template; the transformers backend needs a chat model")
        self.model = AutoModelForImageTextToText.from_pretrained(
            path, revision=cfg.revision, dtype=pick_dtype(cfg.dtype, self.device)
        ).to(self.device).eval()
        self.model_id, self.revision = cfg.model, commit_hash(cfg.model, cfg.revision)

    def prompt_text(self, emotion: str | None) -> str:
        return prompt_text(self.cfg.prompt, emotion)

    def caption(self, images: list, emotions: list[str | None]) -> list[CaptionResult]:
        check_one_emotion_per_image(images, emotions)
        results: list[CaptionResult | None] = [None] * len(images)
        todo = []  # (index, image, chat text)
        for i, (image, emotion) in enumerate(zip(images, emotions)):
            try:
                if image is None:
                    raise ValueError("no image")
                todo.append((i, downscale(image, self.cfg.max_image_side), self._chat(emotion)))
            except Exception as err:  # noqa: BLE001  (recorded per image)
                results[i] = CaptionResult(None, f"{type(err).__name__}: {err}", None)
        if self.cfg.temperature > 0:
            self._torch.manual_seed(self.cfg.seed)
        for chunk in batched(todo, self.cfg.batch_size):
            try:
                raws = self._generate([c[1] for c in chunk], [c[2] for c in chunk])
            except Exception as err:  # noqa: BLE001  one bad image must not cost its batch: retry one by one
                log.warning("caption batch failed (%s); retrying its %d images one by one", err, len(chunk))
                raws = [self._generate_one(image, text) for _, image, text in chunk]
            for (i, _, _), raw in zip(chunk, raws):
                results[i] = raw if isinstance(raw, CaptionResult) else finish(raw, self.cfg.one_sentence)
        return results  # type: ignore[return-value]

    def _chat(self, emotion: str | None) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt_text(emotion)}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _generate_one(self, image, text: str) -> str | CaptionResult:
        try:
            return self._generate([image], [text])[0]
        except Exception as err:  # noqa: BLE001
            return CaptionResult(None, f"{type(err).__name__}: {err}", None)

    def _generate(self, images: list, texts: list[str]) -> list[str]:
        torch = self._torch
        batch = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        batch = batch.to(self.device, dtype=self.model.dtype)  # casts only floating tensors (pixels), ids stay int
        sampling = self.cfg.temperature > 0
        options = dict(do_sample=True, temperature=self.cfg.temperature) if sampling else dict(
            do_sample=False, temperature=None, top_p=None, top_k=None
        )
        with torch.no_grad():
            out = self.model.generate(**batch, max_new_tokens=self.cfg.max_new_tokens, **options)  # (B, L + new)
        new_tokens = out[:, batch["input_ids"].shape[1]:]  # left padding: every prompt ends at the same column
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
