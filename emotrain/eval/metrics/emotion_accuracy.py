"""Emo-A: does an emotion classifier see the target emotion in the generated images?

Given the classifier's probabilities over its own emotions: E-way accuracy (argmax; E = 8 for EmoSet), polarity
accuracy (polarity of the argmax emotion vs the target's) and the mean probability of the target emotion.
The classifier itself is emocurate's (`emocurate.stages.classify.load_classifier`); this module only scores its output.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from emocurate.core.emotions import polarity_of
from emotrain.eval.metrics.images import Advance, ImageItem, batches


class EmotionClassifier(Protocol):
    emotions: Sequence[str]

    def predict(self, images: list) -> np.ndarray:  # list[PIL] -> (N, E) probabilities
        ...


def emotion_probs(items: Sequence[ImageItem], classifier: EmotionClassifier, batch_size: int = 64,
                  progress: Advance | None = None) -> np.ndarray:
    """(N, E) probabilities over `classifier.emotions`, batched."""
    out = []
    for batch in batches(items, batch_size):
        out.append(np.asarray(classifier.predict(batch), dtype=np.float64))
        if progress:
            progress(len(batch))
    return np.concatenate(out) if out else np.zeros((0, len(classifier.emotions)))


def emotion_accuracy(probs: np.ndarray, emotions: Sequence[str], target: str) -> dict[str, float]:
    """Scores of N images that should all show `target`: {"accuracy", "polarity_accuracy", "target_prob"} in [0, 1]."""
    emotions = list(emotions)
    if target not in emotions:
        raise ValueError(f"the emotion classifier does not know {target!r}; its emotions: {', '.join(emotions)}")
    if probs.ndim != 2 or probs.shape[1] != len(emotions) or not len(probs):
        raise ValueError(f"expected (N, {len(emotions)}) probabilities with N >= 1; got {probs.shape}")
    predicted = probs.argmax(axis=1)  # (N,)
    polarities = np.array([polarity_of(e) for e in emotions])
    return {
        "accuracy": float((predicted == emotions.index(target)).mean()),
        "polarity_accuracy": float((polarities[predicted] == polarity_of(target)).mean()),
        "target_prob": float(probs[:, emotions.index(target)].mean()),
    }
