"""The real images of each emotion for FID and their captions for the CLIP score, read from a Hugging Face dataset.

The dataset is a Hub id or a local folder (`save_to_disk` output or data files); the emotion column is a ClassLabel or
strings. It reads the emotion column first and decodes images only when a metric asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from emocurate.core.emotions import EMOTIONS
from emotrain.eval.config import RealConfig


class DatasetImages(Sequence):
    """A lazy, sliceable list of the PIL images at `indices` of one dataset column."""

    def __init__(self, dataset, column: str, indices: Sequence[int]):
        self.dataset, self.column, self.indices = dataset, column, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, slice):
            picked = self.indices[key]
            return list(self.dataset[picked][self.column]) if picked else []
        return self.dataset[self.indices[key]][self.column]


@dataclass
class RealSet:
    dataset: object
    fingerprint: str
    indices: dict[str, list[int]]
    """Row indices per emotion (after the optional seeded subset), in dataset order."""
    cfg: RealConfig

    def images(self, emotion: str) -> DatasetImages:
        return DatasetImages(self.dataset, self.cfg.image_column, self.indices[emotion])

    def captions(self, emotion: str, limit: int, seed: int) -> tuple[list[str], str]:
        """Up to `limit` captions of `emotion` (seeded subset) and where they came from."""
        column = self.cfg.caption_column
        if not column or column not in self.dataset.column_names:
            return [f"an image of {emotion}"], "prompt 'an image of {emotion}' (the dataset has no caption column)"
        rows = self.indices[emotion]
        if len(rows) > limit:
            rows = sorted(np.random.default_rng(seed).choice(rows, size=limit, replace=False).tolist())
        texts = [t for t in self.dataset.select_columns([column])[rows][column] if isinstance(t, str) and t.strip()]
        if not texts:
            return [f"an image of {emotion}"], f"prompt 'an image of {{emotion}}' (no non-empty {column!r} for {emotion})"
        return texts, f"column {column!r}"


def load_real(cfg: RealConfig, emotions: Sequence[str] | None, seed: int) -> RealSet:
    """Open the dataset and index its rows by emotion; every emotion in `emotions` must have real images."""
    if not cfg.dataset:
        raise ValueError("FID and the CLIP score need real images: pass --real DATASET (or set real.dataset)")
    dataset = _open(cfg)
    for column in (cfg.image_column, cfg.emotion_column):
        if column not in dataset.column_names:
            raise ValueError(f"real dataset {cfg.dataset} has no column {column!r} (columns: {dataset.column_names}); "
                             f"set real.image_column / real.emotion_column")
    names = _emotion_names(dataset, cfg)
    by_emotion: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        by_emotion.setdefault(name, []).append(row)
    wanted = emotions if emotions is not None else [e for e in EMOTIONS if e in by_emotion]
    missing = [e for e in wanted if e not in by_emotion]
    if missing:
        raise ValueError(f"real dataset {cfg.dataset} has no images of {missing}; it has {sorted(by_emotion)}")
    indices = {}
    for emotion in wanted:
        rows = by_emotion[emotion]
        if cfg.max_per_emotion and len(rows) > cfg.max_per_emotion:
            rng = np.random.default_rng(seed + EMOTIONS.index(emotion))
            rows = sorted(rng.choice(rows, size=cfg.max_per_emotion, replace=False).tolist())
        indices[emotion] = rows
    return RealSet(dataset=dataset, fingerprint=dataset._fingerprint, indices=indices, cfg=cfg)


def _open(cfg: RealConfig):
    import datasets

    path = Path(cfg.dataset)
    if (path / "dataset_info.json").is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        loaded = datasets.load_from_disk(str(path))
    else:
        loaded = datasets.load_dataset(cfg.dataset, revision=cfg.revision)
    if isinstance(loaded, datasets.DatasetDict):
        if cfg.split not in loaded:
            raise ValueError(f"real dataset {cfg.dataset} has no split {cfg.split!r}; splits: {list(loaded)} (set real.split)")
        loaded = loaded[cfg.split]
    return loaded


def _emotion_names(dataset, cfg: RealConfig) -> list[str]:
    """The emotion of every row as a lowercase name (ClassLabel ints mapped through its names)."""
    feature = dataset.features[cfg.emotion_column]
    values = dataset.select_columns([cfg.emotion_column])[cfg.emotion_column]
    if hasattr(feature, "names"):
        values = [feature.names[v] for v in values]
    names = [str(v).strip().lower() for v in values]
    unknown = sorted(set(names) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"real dataset {cfg.dataset}: column {cfg.emotion_column!r} has values that are not emotions: "
                         f"{unknown[:10]}; known: {', '.join(EMOTIONS)}")
    return names
