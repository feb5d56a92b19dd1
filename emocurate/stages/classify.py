"""Emotion probabilities for images: CLIP zero-shot, a linear probe on CLIP embeddings, or any HF image classifier.

`load_classifier(cfg).predict(images)` returns an (N, K) probability matrix over every class the classifier knows
(`classify.emotions` narrows it); thresholds and the dataset's emotion subset are applied elsewhere (run/decide.py).
Probe training lives in `probe.py` (re-exported here as `train_probe`, `load_labelled_dataset`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

import numpy as np

from emocurate.core.emotions import EMOTIONS, check_emotions
from emocurate.core.loading import batched, check_device, check_positive, commit_hash, pick_device, rgb
from emocurate.stages.probe import load_labelled_dataset, train_probe  # noqa: F401  (part of this module's interface)
from emocurate.core.tiny import resolve

log = logging.getLogger(__name__)

BACKENDS = ("clip-zeroshot", "clip-probe", "hf")
DEFAULT_CLIP = "openai/clip-vit-large-patch14"

_NOUN_ADJ = {
    "amusement": ("amusement", "funny"),
    "awe": ("awe", "awe-inspiring"),
    "contentment": ("contentment", "peaceful"),
    "excitement": ("excitement", "exciting"),
    "anger": ("anger", "infuriating"),
    "disgust": ("disgust", "disgusting"),
    "fear": ("fear", "frightening"),
    "sadness": ("sadness", "sad"),
}
_TEMPLATES = (
    "a photo that evokes {noun}.",
    "an image that makes people feel {noun}.",
    "a {adj} photo.",
    "a {adj} scene.",
    "a painting that evokes {noun}.",
)
DEFAULT_PROMPTS: dict[str, list[str]] = {
    e: [t.format(noun=noun, adj=adj) for t in _TEMPLATES] for e, (noun, adj) in _NOUN_ADJ.items()
}
"""Zero-shot prompt set: five templates per emotion, their text embeddings averaged (CLIP paper's prompt ensembling)."""


@dataclass
class ClassifyConfig:
    backend: Literal["clip-zeroshot", "clip-probe", "hf"] = "clip-zeroshot"
    """clip-zeroshot: prompts per emotion; clip-probe: a trained linear head (`probe`); hf: an image-classification model."""
    model: str = DEFAULT_CLIP
    """A CLIP model id or folder (zeroshot, probe), or an image-classification model whose labels are emotion names (hf)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of `model`."""
    probe: str | None = None
    """Folder with probe.safetensors + probe_config.json (`emocurate train-classifier`); required for clip-probe."""
    min_confidence: float = 0.75
    """Keep an image only if its top emotion's probability is at least this (paper: 0.75)."""
    batch_size: int = 32
    device: str = "auto"
    prompts: dict[str, list[str]] | None = None
    """Zero-shot prompts per emotion (default: DEFAULT_PROMPTS); each emotion classified needs at least one."""
    emotions: list[str] | None = None
    """The classes the classifier scores; None (default): all of the model's own classes (the probe's or hf model's
    labels, the zero-shot prompts' emotions). The softmax, the argmax and `min_confidence` act on these, as the paper
    filters EmoArt with a classifier of EmoSet's eight emotions; the recipe's top-level `emotions` then keeps a subset
    (others are dropped as `emotion_not_kept`). A narrower list renormalises the softmax over it (not the paper's)."""

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"classify.backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("classify.model must name a model (Hub id or local folder)")
        if self.backend == "hf" and self.model == DEFAULT_CLIP:
            raise ValueError("classify.backend=hf needs classify.model=an image-classification model whose labels are emotion names")
        if self.backend == "clip-probe" and not self.probe:
            raise ValueError("classify.backend=clip-probe needs classify.probe=FOLDER (made by `emocurate train-classifier`)")
        conf = self.min_confidence
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
            raise ValueError(f"classify.min_confidence must be in [0, 1]; got {conf!r}")
        check_positive(self.batch_size, "classify.batch_size")
        check_device(self.device, "classify.device")
        if self.prompts is not None:
            _check_prompts(self.prompts)
        if self.emotions is not None:
            if not self.emotions:
                raise ValueError("classify.emotions is empty: list the classes to score, or leave it unset for all of them")
            self.emotions = list(check_emotions(self.emotions))


def _check_prompts(prompts: dict) -> None:
    if not isinstance(prompts, dict) or not prompts:
        raise ValueError("classify.prompts must map emotion names to lists of prompts")
    check_emotions(list(prompts))
    for emotion, texts in prompts.items():
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"classify.prompts.{emotion} must be a non-empty list of non-empty strings; got {texts!r}")


class Classifier(Protocol):
    emotions: tuple[str, ...]
    model_id: str
    revision: str | None
    backend: str

    def predict(self, images: list) -> np.ndarray:
        """(N, len(emotions)) float32 probabilities, each row summing to 1."""


def load_classifier(cfg: ClassifyConfig, emotions: Sequence[str] | None = None) -> Classifier:
    """Build the classifier named by `cfg.backend`; columns follow the order of `emotions`.

    emotions None: `cfg.emotions`, and when that is None too, every class the model has (`classifier.emotions`)."""
    emotions = emotions if emotions is not None else cfg.emotions
    if emotions is not None:
        check_emotions(emotions)
        emotions = tuple(emotions)
    if cfg.backend == "clip-zeroshot":
        return ZeroShotClassifier(cfg, emotions)
    if cfg.backend == "clip-probe":
        return ProbeClassifier(cfg, emotions)
    return HFClassifier(cfg, emotions)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class ZeroShotClassifier:
    """softmax(logit_scale * cos(image, mean prompt embedding of each emotion))."""

    backend = "clip-zeroshot"

    def __init__(self, cfg: ClassifyConfig, emotions: tuple[str, ...] | None):
        from emocurate.stages.clip_embed import HFClipEncoder

        prompts = cfg.prompts if cfg.prompts is not None else DEFAULT_PROMPTS
        emotions = emotions if emotions is not None else tuple(e for e in EMOTIONS if e in prompts)
        missing = [e for e in emotions if e not in prompts]
        if missing:
            raise ValueError(f"classify.prompts has no prompts for {missing}; add a list of prompts for each emotion classified")
        self.emotions = emotions
        self.encoder = HFClipEncoder(cfg.model, cfg.revision, cfg.device, cfg.batch_size)
        self.model_id, self.revision = cfg.model, self.encoder.revision
        self.prompts = {e: [prompts[e]] if isinstance(prompts[e], str) else list(prompts[e]) for e in emotions}
        rows = []
        for e in emotions:
            mean = self.encoder.texts(self.prompts[e]).mean(axis=0)  # (D,)
            rows.append(mean / np.linalg.norm(mean))
        self.class_embeddings = np.stack(rows).astype(np.float32)  # (K, D), computed once

    def predict(self, images: list) -> np.ndarray:
        feats = self.encoder.images(images)  # (N, D)
        return softmax(self.encoder.logit_scale * feats @ self.class_embeddings.T)  # (N, K)


class ProbeClassifier:
    """A linear head (trained by `probe.train_probe`) on standardised, L2-normalised CLIP image embeddings."""

    backend = "clip-probe"

    def __init__(self, cfg: ClassifyConfig, emotions: tuple[str, ...] | None):
        from emocurate.stages.clip_embed import HFClipEncoder
        from emocurate.stages.probe import load_probe

        probe = load_probe(cfg.probe)
        emotions = emotions if emotions is not None else tuple(probe.emotions)
        missing = [e for e in emotions if e not in probe.emotions]
        if missing:
            raise ValueError(f"probe {cfg.probe} was trained on {list(probe.emotions)}; it cannot score {missing}")
        if cfg.model != probe.clip_model:
            log.warning("probe %s was trained on %s embeddings; classify.model is %s", cfg.probe, probe.clip_model, cfg.model)
        self.encoder = HFClipEncoder(cfg.model, cfg.revision, cfg.device, cfg.batch_size)
        if self.encoder.dim != probe.embedding_dim:
            raise ValueError(
                f"probe {cfg.probe} expects {probe.embedding_dim}-d embeddings from {probe.clip_model}, but classify.model="
                f"{cfg.model} gives {self.encoder.dim}-d; set classify.model={probe.clip_model}"
            )
        self.probe, self.probe_dir, self.emotions = probe, str(cfg.probe), emotions
        self.columns = [probe.emotions.index(e) for e in emotions]
        self.model_id, self.revision = cfg.model, self.encoder.revision

    def predict(self, images: list) -> np.ndarray:
        logits = self.probe.logits(self.encoder.images(images))  # (N, K_probe)
        return softmax(logits[:, self.columns])  # softmax over the subset = renormalised subset probabilities


class HFClassifier:
    """Any `AutoModelForImageClassification` whose id2label names are emotion names (case-insensitive)."""

    backend = "hf"

    def __init__(self, cfg: ClassifyConfig, emotions: tuple[str, ...] | None):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        path = resolve(cfg.model)
        self.device = pick_device(cfg.device)
        self.model = AutoModelForImageClassification.from_pretrained(path, revision=cfg.revision).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, revision=cfg.revision)
        labels = {int(i): str(name) for i, name in self.model.config.id2label.items()}
        names = {i: name.strip().lower() for i, name in labels.items()}
        unknown = sorted(labels[i] for i, n in names.items() if n not in EMOTIONS)
        if unknown:
            raise ValueError(
                f"classify.model={cfg.model} has labels {sorted(labels.values())}; {unknown} are not emotion names. "
                f"The hf backend needs a model whose labels are among {', '.join(EMOTIONS)}"
            )
        index = {n: i for i, n in names.items()}
        emotions = emotions if emotions is not None else tuple(e for e in EMOTIONS if e in index)
        missing = [e for e in emotions if e not in index]
        if missing:
            raise ValueError(f"classify.model={cfg.model} has no label for {missing}; its labels: {sorted(labels.values())}")
        self.columns = [index[e] for e in emotions]
        self.emotions, self.batch_size, self._torch = emotions, cfg.batch_size, torch
        self.model_id, self.revision = cfg.model, commit_hash(cfg.model, cfg.revision)

    def predict(self, images: list) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for chunk in batched(list(images), self.batch_size):
                pixels = self.processor(images=[rgb(im) for im in chunk], return_tensors="pt")["pixel_values"]
                logits = self.model(pixel_values=pixels.to(self.device, self.model.dtype)).logits  # (B, num_labels)
                out.append(softmax(logits.float().cpu().numpy()[:, self.columns]))
        return np.concatenate(out) if out else np.zeros((0, len(self.emotions)), np.float32)


def top_emotion(probs: np.ndarray, emotions: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The top emotion name and its probability per row."""
    idx = probs.argmax(axis=1)
    return [emotions[i] for i in idx], probs[np.arange(len(idx)), idx].astype(np.float32)
