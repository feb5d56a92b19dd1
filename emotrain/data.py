"""Training data: load a dataset (Hub id, load_dataset folder or save_to_disk folder), validate it before the first step,
oversample emotions to balance them (seeded), and serve samples in a resumable, per-rank order.

It reads datasets through the published schema (image, emotion, caption columns), never through emocurate's internals.
"""

from __future__ import annotations

import hashlib
import json
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
    except (DatasetError, ConnectionError):  # a network error stays one (exit code 1 on the command line)
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user needs the source and the reason
        if "corresponds to no data" in str(err):  # a data folder whose files hold no rows of this split
            raise DatasetError(f"dataset {source!r} has no rows in split {split!r}: train on a dataset with kept records, "
                               "or set data.split") from None
        hint = "" if Path(source).exists() else " (there is no local folder of that name either)"
        raise DatasetError(f"could not load dataset {source!r} (split {split!r}){hint}: {type(err).__name__}: {err}") from err


def check_source(source: str) -> None:
    """Fail before any model loads when `source` is neither a folder nor a Hub id, or a Hub id that offline mode forbids."""
    from emocurate.core.hub import in_cache, offline

    if Path(source).expanduser().exists():
        return
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise DatasetError(f"dataset {source!r} is neither an existing folder nor a Hub id (user/name)")
    if offline():
        if not in_cache(source, "dataset"):
            raise DatasetError(f"dataset {source!r} is not a local folder and not in the Hugging Face cache, and "
                               "HF_HUB_OFFLINE=1 forbids downloading it: run once online (or unset HF_HUB_OFFLINE), or "
                               "pass a local folder")
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(source)  # one small request: a wrong name or a missing token fails before any model loads
    except (RepositoryNotFoundError, GatedRepoError) as err:
        raise _not_found(source) from err
    except Exception as err:  # noqa: BLE001 - connection errors: OSError (requests) or the httpx family's own classes
        if not _is_connection_error(err):
            raise
        raise ConnectionError(f"could not reach the Hub for dataset {source!r} (set HF_HUB_OFFLINE=1 to use a cached "
                              f"copy): {err}") from err  # exit code 1 on the command line, as for any network error


def _is_connection_error(err: Exception) -> bool:
    """requests' errors are OSErrors; httpx (or a renamed fork such as httpx2) raises its own transport errors."""
    roots = {cls.__module__.split(".")[0].rstrip("0123456789") for cls in type(err).__mro__}
    return isinstance(err, OSError) or bool(roots & {"httpx", "httpcore", "requests", "urllib3"})


def _not_found(repo_id: str) -> DatasetError:
    from emocurate.core.hub import token_available

    if not token_available():
        return DatasetError(f"dataset {repo_id!r} was not found on the Hub, or it is private or gated and no token is set: "
                            "set HF_TOKEN (or run `hf auth login`) with read access to it")
    return DatasetError(f"dataset {repo_id!r} was not found on the Hub, or your token cannot read it "
                        "(check the name and the token's access)")


def _load(source: str, split: str) -> "datasets.Dataset":
    import datasets

    path = Path(source).expanduser()
    if path.exists():
        if (path / "state.json").exists() and not json.loads((path / "state.json").read_text()).get("_data_files"):
            raise DatasetError(f"dataset {source!r} has no rows (a save_to_disk folder of 0 rows): train on a dataset with "
                               "kept records (`emocurate status RUN` shows why a curation run kept none)")
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():  # a save_to_disk folder
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DatasetError(f"{source}: no split {split!r}; splits: {', '.join(ds)} (set data.split)")
                ds = ds[split]
            return ds
        return datasets.load_dataset(str(path), split=split)
    check_source(source)
    return _load_from_hub(source, split)


def _load_from_hub(repo_id: str, split: str) -> "datasets.Dataset":
    """Download a Hub dataset (or read the cached copy); offline, private and unreachable repos fail in one line.

    Not streamed: training reads rows in a seeded random order and resumes at any position, which needs random access."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return datasets.load_dataset(repo_id, split=split)
    except (DatasetNotFoundError, RepositoryNotFoundError, GatedRepoError) as err:
        raise _not_found(repo_id) from err
    except ConnectionError as err:
        raise ConnectionError(f"could not reach the Hub for dataset {repo_id!r} (set HF_HUB_OFFLINE=1 to use a cached "
                              f"copy): {err}") from err


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
    emotions_from: str = "data.emotions"
    """Where `emotions` came from: data.emotions, or the dataset's ClassLabel names / values (with what had no rows)."""


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
    return Validated(ds, labels, emotions, _emotions_from(ds.features[cfg.emotion_column], present, cfg.emotions))


def _emotions_from(feature, present: set[str], chosen: list[str] | None) -> str:
    """data.emotions when set; else the dataset's ClassLabel names (saying which had no rows) or its values."""
    import datasets

    if chosen is not None:
        return "data.emotions"
    if not isinstance(feature, datasets.ClassLabel):
        return "the dataset's values"
    empty = [n for n in (n.strip().lower() for n in feature.names) if n not in present]
    return "the dataset's ClassLabel names" + (f"; no rows for {', '.join(empty)}: not learned" if empty else "")


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

