"""Training data: load a dataset (Hub id, load_dataset folder or save_to_disk folder), validate it before the first step,
oversample emotions to balance them (seeded), and serve samples in a resumable, per-rank order.

It reads datasets through the published schema (image, emotion, caption columns), never through emocurate's internals.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
from PIL import Image

from emocurate.core.decode import decode_image
from emocurate.core.emotions import EMOTIONS

if TYPE_CHECKING:
    import datasets

    from emotrain.recipe import DataConfig

MAX_EXAMPLES = 5


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message lists every problem with counts and examples."""


def load_training_dataset(source: str, split: str = "train") -> "datasets.Dataset":
    """A `datasets.Dataset` from a Hub id, a `load_dataset`-able folder, or a `save_to_disk` folder."""
    try:
        return _load(source, split)
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user needs the source and the reason
        hint = "" if Path(source).exists() else " (there is no local folder of that name either)"
        raise DatasetError(f"could not load dataset {source!r} (split {split!r}){hint}: {type(err).__name__}: {err}") from err


def _load(source: str, split: str) -> "datasets.Dataset":
    import datasets

    path = Path(source)
    if path.exists():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():  # a save_to_disk folder
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DatasetError(f"{source}: no split {split!r}; splits: {', '.join(ds)} (set data.split)")
                ds = ds[split]
            return ds
        return datasets.load_dataset(str(path), split=split)
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise DatasetError(f"dataset {source!r} is neither an existing folder nor a Hub id (user/name)")
    return datasets.load_dataset(source, split=split)


def emotion_labels(ds: "datasets.Dataset", column: str) -> list[str]:
    """Emotion names per row, from a ClassLabel column or plain strings (stripped, lower-cased)."""
    import datasets

    feature = ds.features[column]
    values = ds[column]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v).strip().lower() if v is not None and v >= 0 else "" for v in values]
    return [str(v).strip().lower() if v is not None else "" for v in values]


@dataclass
class Validated:
    """A dataset that passed validation: raw-image view, per-row labels, and the emotions the model will learn."""

    dataset: "datasets.Dataset"  # image column not decoded: {"bytes", "path"}
    labels: list[str]
    emotions: list[str]


def validate(ds: "datasets.Dataset", cfg: "DataConfig", check_images: bool | None = None, workers: int = 4) -> Validated:
    """Check columns, labels, captions and (optionally) every image; raise one DatasetError listing all problems."""
    import datasets

    columns = {"image": cfg.image_column, "emotion": cfg.emotion_column, "caption": cfg.caption_column}
    missing = [f"{role} column {name!r}" for role, name in columns.items() if name not in ds.column_names]
    if missing:
        raise DatasetError(
            f"dataset is missing {', '.join(missing)}; it has columns: {', '.join(ds.column_names)} "
            "(set data.image_column / data.emotion_column / data.caption_column)"
        )
    if not isinstance(ds.features[cfg.image_column], datasets.Image):
        raise DatasetError(f"column {cfg.image_column!r} must be an Image feature; got {ds.features[cfg.image_column]}")
    if len(ds) == 0:
        raise DatasetError("dataset has no rows")
    ds = ds.cast_column(cfg.image_column, datasets.Image(decode=False))
    labels = emotion_labels(ds, cfg.emotion_column)
    allowed = cfg.emotions or list(EMOTIONS)
    problems: dict[str, list[str]] = {}
    for i, label in enumerate(labels):
        if label not in allowed:
            problems.setdefault(f"labels outside the emotion table ({', '.join(allowed)})", []).append(f"row {i}: {label!r}")
    for i, caption in enumerate(ds[cfg.caption_column]):
        if not isinstance(caption, str) or not caption.strip():
            problems.setdefault("empty or missing captions", []).append(f"row {i}: {caption!r}")
    if cfg.validate_images if check_images is None else check_images:
        images = ds.select_columns([cfg.image_column])
        with ThreadPoolExecutor(workers) as pool:  # a chunk at a time: never every image's bytes in memory at once
            for start in range(0, len(images), 256):
                cells = images[start:start + 256][cfg.image_column]
                for i, reason in enumerate(pool.map(_image_problem, cells), start):
                    if reason:
                        problems.setdefault("undecodable images", []).append(f"row {i}: {reason}")
    if problems:
        lines = [f"dataset has {sum(map(len, problems.values()))} problem(s) in {len(ds)} rows; fix them and rerun:"]
        for kind, rows in problems.items():
            lines.append(f"  {len(rows)} {kind}, e.g. {'; '.join(rows[:MAX_EXAMPLES])}")
        raise DatasetError("\n".join(lines))
    present = set(labels)
    emotions = [e for e in EMOTIONS if e in present] if cfg.emotions is None else list(cfg.emotions)
    absent = [e for e in emotions if e not in present]
    if absent:
        raise DatasetError(f"data.emotions lists {absent} but the dataset has no rows for them")
    return Validated(ds, labels, emotions)


def load_image(cell: dict) -> Image.Image:
    """Decode a raw Image cell ({"bytes", "path"}) to RGB; raise ValueError with the reason if it cannot be decoded."""
    data = cell.get("bytes")
    if data is None and cell.get("path"):
        data = Path(cell["path"]).read_bytes()
    decoded = decode_image(data or b"")
    if decoded.image is None:
        raise ValueError(decoded.reason)
    return decoded.image


def _image_problem(cell: dict | None) -> str | None:
    if cell is None:
        return "no image"
    try:
        load_image(cell)
    except (ValueError, OSError) as err:
        return str(err)
    return None


def oversample(labels: Sequence[str], emotions: Sequence[str], seed: int) -> tuple[list[int], dict, dict]:
    """Row indices where every emotion has as many entries as the largest one (extra rows drawn with replacement)."""
    before = Counter(labels)
    target = max(before[e] for e in emotions)
    rng = np.random.default_rng(seed)
    indices: list[int] = []
    for emotion in emotions:
        rows = [i for i, label in enumerate(labels) if label == emotion]
        extra = rng.choice(rows, size=target - len(rows), replace=True).tolist() if len(rows) < target else []
        indices += rows + extra
    after = Counter(labels[i] for i in indices)
    return indices, {e: before[e] for e in emotions}, {e: after[e] for e in emotions}


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size` (bicubic) and crop the center square."""
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


class TrainingSet:
    """Map-style dataset; a key is (row, flip). Returns VAE pixels, CLIP pixels, emotion index and caption ids."""

    def __init__(self, validated: Validated, cfg: "DataConfig", tokenizer, clip_size: int, clip_mean, clip_std):
        self.ds = validated.dataset
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.emotion_index = [validated.emotions.index(label) if label in validated.emotions else -1 for label in validated.labels]
        self.clip_size = clip_size
        self.clip_mean = np.asarray(clip_mean, dtype=np.float32)[:, None, None]
        self.clip_std = np.asarray(clip_std, dtype=np.float32)[:, None, None]

    def clip_pixels(self, image: Image.Image):  # -> (3, S, S)
        import torch

        array = np.asarray(center_crop(image, self.clip_size), dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((array - self.clip_mean) / self.clip_std)

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        import torch

        row, flip = key
        record = self.ds[int(row)]
        image = load_image(record[self.cfg.image_column])
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.asarray(center_crop(image, self.cfg.resolution), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        caption_ids = self.tokenizer(
            record[self.cfg.caption_column], padding="max_length", truncation=True,
            max_length=self.tokenizer.model_max_length, return_tensors="pt",
        ).input_ids[0]
        return {
            "pixel_values": torch.from_numpy(pixels),  # (3, R, R) in [-1, 1]
            "clip_pixel_values": self.clip_pixels(image),  # (3, S, S)
            "emotion": self.emotion_index[int(row)],
            "caption_ids": caption_ids,  # (L,)
        }

    def __len__(self) -> int:
        return len(self.ds)


class ClipImages:
    """Map-style view giving (CLIP pixels, emotion index) for each row once: the cluster pass."""

    def __init__(self, training_set: TrainingSet):
        self.ts = training_set

    def __getitem__(self, row: int):
        image = load_image(self.ts.ds[int(row)][self.ts.cfg.image_column])
        return self.ts.clip_pixels(image), self.ts.emotion_index[int(row)]

    def __len__(self) -> int:
        return len(self.ts)


class ResumableSampler:
    """An endless, seeded stream of (row, flip) keys for one rank, starting at a global sample position.

    Global position p reads epoch p // N's permutation of the oversampled list; global micro-batch g (positions
    [g*B*W, (g+1)*B*W)) is split into W consecutive slices of B, one per rank. So the order depends only on (seed,
    position), and a resumed run reads exactly what an uninterrupted one would have read.
    """

    def __init__(self, indices: Sequence[int], seed: int, batch_size: int, rank: int = 0, world: int = 1,
                 start: int = 0, flip: bool = False):
        if start % (batch_size * world):
            raise ValueError(f"start position {start} is not a multiple of the global micro-batch {batch_size * world}")
        self.indices, self.seed, self.batch, self.rank, self.world = list(indices), seed, batch_size, rank, world
        self.start, self.flip = start, flip
        self._perm: tuple[int, list[int]] | None = None

    def _permutation(self, epoch: int) -> list[int]:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = (epoch, rng.permutation(len(self.indices)).tolist())
        return self._perm[1]

    def key(self, position: int) -> tuple[int, bool]:
        epoch, offset = divmod(position, len(self.indices))
        row = self.indices[self._permutation(epoch)[offset]]
        flip = self.flip and hashlib.sha256(f"{self.seed}:{position}".encode()).digest()[0] & 1 == 1
        return row, flip

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        global_batch = self.batch * self.world
        g = self.start // global_batch
        while True:
            first = g * global_batch + self.rank * self.batch
            for position in range(first, first + self.batch):
                yield self.key(position)
            g += 1


def collate(samples: list[dict]) -> dict:
    """Stack each field: images or cached features (B, ...), the emotion index (B,)."""
    import torch

    return {k: torch.tensor([s[k] for s in samples]) if k == "emotion" else torch.stack([s[k] for s in samples])
            for k in samples[0]}

