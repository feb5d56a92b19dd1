"""The emotion table both packages use: Mikels' eight emotions in EmoSet's index order, with their polarity.

It only names emotions; which subset a dataset or model uses is decided by recipes and configs.
"""

from __future__ import annotations

from typing import Sequence

EMOTIONS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
)
"""EmoSet-118K's order: index i in EmoSet is EMOTIONS[i]."""

POLARITIES: tuple[str, ...] = ("positive", "negative")

POLARITY: dict[str, str] = {
    **{name: "positive" for name in EMOTIONS[:4]},
    **{name: "negative" for name in EMOTIONS[4:]},
}

EMOART_EMOTIONS: tuple[str, ...] = tuple(e for e in EMOTIONS if e not in ("excitement", "disgust"))
"""EmoArt keeps six: excitement and disgust are under 1% of art (paper, 'Scalability of CoEmoGen')."""


def polarity_of(emotion: str) -> str:
    """The polarity ('positive' or 'negative') of an emotion name; a clear error for an unknown one."""
    try:
        return POLARITY[emotion]
    except KeyError:
        raise ValueError(f"unknown emotion {emotion!r}; known emotions: {', '.join(EMOTIONS)}") from None


def check_emotions(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a subset of emotion names and return it in EmoSet order (duplicates are an error)."""
    names = list(names)
    unknown = [n for n in names if n not in POLARITY]
    if unknown:
        raise ValueError(f"unknown emotion(s) {unknown}; known emotions: {', '.join(EMOTIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"emotion list has duplicates: {names}")
    if not names:
        raise ValueError("emotion list is empty")
    return tuple(e for e in EMOTIONS if e in names)
