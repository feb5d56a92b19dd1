"""Emotion-focused captions from a multimodal LLM: a local transformers chat model or an OpenAI-compatible endpoint.

`emocurate.stages.caption.load_captioner(cfg).caption(images, emotions)` returns one CaptionResult per image; a failure is a result, never an
exception. This module holds the contract (config, prompts, cleaning); backends live in transformers.py,
openai.py and vllm.py beside it. It does not decide which images to caption or keep; the driver does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from emocurate.core.loading import DTYPES, check_device, check_positive, rgb

_DETAILS = "brightness, colorfulness, scene type, object classes, facial expressions, and human actions"
PROMPTS: dict[str, str] = {
    # The paper's prompt ("Coherent semantic acquisition"): emotion prior + one sentence. Its best in Table 2(a).
    "emotion-one-sentence": (
        "This image evokes a strong emotion of {emotion}. Provide a one-sentence caption that vividly describes the "
        f"visual details, focusing on elements like {_DETAILS} that effectively convey and express this emotion."
    ),
    # Table 2(a), no emotion prior, one sentence.
    "plain-one-sentence": (
        "Provide a one-sentence caption that vividly describes the visual details of this image, focusing on elements "
        f"like {_DETAILS}."
    ),
    # Table 2(a), no emotion prior, as many details as possible (not limited to one sentence).
    "plain-detailed": (
        "Describe this image in as much detail as possible, covering elements like "
        f"{_DETAILS}. Include every detail you can see."
    ),
    # Table 2(a), emotion prior + as many details as possible.
    "emotion-detailed": (
        "This image evokes a strong emotion of {emotion}. Describe the image in as much detail as possible, covering "
        f"elements like {_DETAILS} that convey and express this emotion. Include every detail you can see."
    ),
}
ONE_SENTENCE_PROMPTS = frozenset({"emotion-one-sentence", "plain-one-sentence"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class CaptionConfig:
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    """transformers: a local image-text-to-text chat model; openai: any OpenAI-compatible chat-completions endpoint;
    vllm: offline batched inference with vLLM on this machine's GPUs (the `vllm` extra)."""
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    """Hub id or folder (transformers, vllm), or the model name the endpoint serves (openai)."""
    revision: str | None = None
    prompt: str = "emotion-one-sentence"
    """A name from contract.PROMPTS; the default is the paper's prompt."""
    max_new_tokens: int = 96
    max_image_side: int = 768
    """Images are downscaled so their longer side is at most this many pixels before captioning."""
    batch_size: int = 8
    temperature: float = 0.0
    """0 = greedy decoding (deterministic); above 0 samples, seeded with `seed`."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    """auto = bfloat16 on a GPU that supports it, else float32."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai backend: the endpoint's base URL (…/v1); requests go to {base_url}/chat/completions."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai backend: the NAME of the environment variable holding the API key (read at call time, never stored)."""
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 5
    retry_base_s: float = 1.0
    """openai backend: first backoff delay; it doubles per retry (with jitter) unless the server sends Retry-After."""
    vllm_args: dict = field(default_factory=dict)
    """vllm backend: extra `vllm.LLM` arguments, e.g. {tensor_parallel_size: 2, max_model_len: 8192}."""

    def __post_init__(self):
        if self.backend not in ("transformers", "openai", "vllm"):
            raise ValueError(f"caption.backend must be 'transformers' or 'openai' (or 'vllm', with the vllm extra); got {self.backend!r}")
        if self.vllm_args and self.backend != "vllm":
            raise ValueError("caption.vllm_args applies to caption.backend=vllm only")
        if self.prompt not in PROMPTS:
            raise ValueError(f"caption.prompt must be one of {', '.join(PROMPTS)}; got {self.prompt!r}")
        for key in ("max_new_tokens", "batch_size", "concurrency"):
            check_positive(getattr(self, key), f"caption.{key}")
        if isinstance(self.max_image_side, bool) or not isinstance(self.max_image_side, int) or self.max_image_side < 28:
            raise ValueError(f"caption.max_image_side must be an integer >= 28; got {self.max_image_side!r}")
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ValueError(f"caption.max_retries must be an integer >= 0; got {self.max_retries!r}")
        for key in ("temperature", "retry_base_s"):
            if not isinstance(getattr(self, key), (int, float)) or getattr(self, key) < 0:
                raise ValueError(f"caption.{key} must be a number >= 0; got {getattr(self, key)!r}")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ValueError(f"caption.timeout_s must be a number > 0; got {self.timeout_s!r}")
        check_device(self.device, "caption.device")
        if self.dtype not in DTYPES:
            raise ValueError(f"caption.dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if not re.match(r"^https?://", self.base_url or ""):
            raise ValueError(f"caption.base_url must start with http:// or https://; got {self.base_url!r}")
        if not _ENV_NAME.match(self.api_key_env or ""):
            # never echo the value: someone may have pasted the key itself here
            raise ValueError("caption.api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")

    @property
    def one_sentence(self) -> bool:
        return self.prompt in ONE_SENTENCE_PROMPTS


@dataclass
class CaptionResult:
    text: str | None
    """The cleaned caption; None when captioning failed."""
    error: str | None
    """Why there is no caption (e.g. 'empty caption', 'HTTP 400: ...'); None on success."""
    raw: str | None
    """What the model returned before cleaning (None when it returned nothing)."""


class Captioner(Protocol):
    model_id: str
    revision: str | None
    backend: str

    def prompt_text(self, emotion: str | None) -> str: ...

    def caption(self, images: list, emotions: list[str | None]) -> list[CaptionResult]: ...


def check_one_emotion_per_image(images: list, emotions: list) -> None:
    """Every backend's `caption()` contract: one emotion (or None) per image."""
    if len(images) != len(emotions):
        raise ValueError(f"caption() needs one emotion (or None) per image; got {len(images)} and {len(emotions)}")


def prompt_text(prompt: str, emotion: str | None) -> str:
    """The prompt `prompt` (a PROMPTS name) for one image; emotion-prior prompts need an emotion."""
    template = PROMPTS[prompt]
    if "{emotion}" not in template:
        return template
    if not emotion:
        raise ValueError(f"prompt {prompt!r} needs the image's emotion, and it has none")
    return template.format(emotion=emotion)


def downscale(image, max_side: int):
    """RGB copy whose longer side is at most `max_side` (aspect kept); smaller images are left as they are."""
    from PIL import Image

    image = rgb(image)
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


# ---- cleaning -------------------------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)  # reasoning models' hidden thoughts
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|<(?:start|end)_of_turn>|\[/?INST\]|<unk>|<pad>")
_ROLE = re.compile(r"^\s*(?:assistant|model|gpt)\s*[:\n]\s*", re.I)
_LEAD_IN = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course)\s*[,!.:-]*\s*)?"
    r"(?:here(?:'s| is)\s+(?:a|an|the|my)?\s*[^:\n]{0,60}?(?:caption|description|sentence)[^:\n]{0,120}:\s*"
    r"|(?:[\w-]+\s+){0,3}(?:caption|description)(?:\s+[\w-]+){0,3}\s*(?::|\n)\s*)",
    re.I,
)
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(\*\*|__|\*|`+|~~)")
_MD_LINE = re.compile(r"^\s{0,3}(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)", re.M)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd\u200b-\u200f\ufeff]")
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr st sr jr prof mt ft no approx cf al fig ca".split()
)


def clean_caption(raw: str, one_sentence: bool = True) -> str:
    """Strip chat artefacts, role and 'Caption:' lead-ins, markdown, quotes and extra whitespace.

    With `one_sentence`, keep only the first sentence ("e.g.", "Mr.", "3.5" and initials do not end one).
    Returns "" when nothing is left (the caller records that as an error).
    """
    text = _SPECIAL.sub(" ", _THINK.sub(" ", raw or ""))
    text = _CONTROL.sub("", text)
    text = _ROLE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_LINE.sub("", text)
    text = _MD_MARKS.sub("", text)
    text = _unquote(text.strip())
    for _ in range(2):  # "Sure! Here is a caption:\n\nCaption: ..." has two lead-ins
        text = _unquote(_LEAD_IN.sub("", text, count=1).strip())
    if one_sentence:
        text = first_sentence(text)
    return _unquote(re.sub(r"\s+", " ", text).strip())


def first_sentence(text: str) -> str:
    """The text up to and including its first sentence end; a blank line or line break also ends it."""
    text = text.strip()
    for match in re.finditer(r"[.!?]+(?=[\"'”’)\]]*(?:\s|$))|\n", text):
        end = match.end()
        if match.group() == "\n":
            if text[:match.start()].strip():
                return text[:match.start()].strip()
            continue
        if match.group() == "." and _is_abbreviation(text[:match.start()]):
            continue
        while end < len(text) and text[end] in "\"'”’)]":
            end += 1
        return text[:end].strip()
    return text


def _is_abbreviation(before: str) -> bool:
    word = re.split(r"\s", before)[-1].lower().strip("(\"'“‘")
    if word in _ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isalpha() and before[-1:].isupper()  # an initial such as "J. R. R. Tolkien"


_PAIRED = (re.compile(r'["“«„]([^"“”«»„]*)["”»“]([.!?]?)'), re.compile(r"['‘]([^'‘’]*)['’]([.!?]?)"))
_DOUBLE = '"“”«»„'


def _unquote(text: str) -> str:
    """Remove quotes around the whole caption (paired, or a lone opening/closing one); keep quotes inside it."""
    for pattern in _PAIRED:
        match = pattern.fullmatch(text)
        if match:
            return (match.group(1).strip() + match.group(2)).strip()
    if sum(text.count(q) for q in _DOUBLE) == 1:
        if text[:1] in _DOUBLE:
            return text[1:].strip()
        if text[-1:] in _DOUBLE:
            return text[:-1].strip()
    return text


def finish(raw: str | None, one_sentence: bool) -> CaptionResult:
    """A CaptionResult from raw model output: cleaned text, or the error 'empty caption'."""
    if raw is None:
        return CaptionResult(None, "no output", None)
    text = clean_caption(raw, one_sentence)
    return CaptionResult(text, None, raw) if text else CaptionResult(None, "empty caption", raw)
