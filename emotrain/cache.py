"""Feature cache for training: per training row, the frozen encoders' outputs computed once (VAE latent mean + std, CLIP
image tokens, the caption's pooled projected embedding) and read back each step without decoding an image.

One folder per key (dataset fingerprint, model ids + revisions, resolution, crop, flip, dtypes): a change starts a new
cache. Shards are written tmp-then-rename and split across ranks, so a killed pass resumes. It does not train (train.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

if TYPE_CHECKING:
    import torch

    from emotrain.data import TrainingSet
    from emotrain.recipe import DataConfig

logger = logging.getLogger(__name__)

FORMAT = 1
SHARD_ROWS = 256
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
MANIFEST = "manifest.json"  # written last: its presence means every shard is there

CacheProgress = Callable[[str, int, Optional[int]], None]
"""progress(task, advance, total): the shape of emocurate.core.progress.Progress."""


def cache_root(cfg: "DataConfig") -> Path:
    """data.cache_dir, else $EMOTRAIN_CACHE, else ~/.cache/emotrain/features."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("EMOTRAIN_CACHE", Path.home() / ".cache" / "emotrain" / "features"))


def model_fingerprint(model_id: str, revision: str | None, probe_file: str) -> dict:
    """What identifies a model's weights: a local folder's file sizes + mtimes, or a Hub id's resolved commit."""
    from emocurate.core.tiny import resolve

    path = Path(resolve(model_id))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for p in files:
            stat = p.stat()
            digest.update(f"{p.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return {"id": model_id, "path": str(path), "files": digest.hexdigest()[:16]}
    from emotrain.train import hub_revision

    return {"id": model_id, "revision": revision, "resolved": hub_revision(model_id, revision, probe_file)}


def dataset_fingerprint(ds, labels: Sequence[str], captions: Sequence[str]) -> dict:
    """The `datasets` fingerprint plus a hash of the labels and captions (an edited caption changes the cache)."""
    digest = hashlib.sha256()
    for label, caption in zip(labels, captions):
        digest.update(f"{label}\t{caption}\n".encode())
    return {"fingerprint": getattr(ds, "_fingerprint", None), "rows": len(labels), "labels_captions": digest.hexdigest()[:16]}


def full_key(key: dict, layout: "Layout") -> dict:
    """The key plus the tensors cached (with or without image tokens are two caches)."""
    return {**key, "tensors": {k: list(v) for k, v in layout.names().items()}}


def key_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Layout:
    """What one cached row holds: the tensors' names and per-row shapes (views: the unflipped and, with random_flip,
    the flipped image)."""

    latent_shape: tuple[int, ...]  # (4, R/8, R/8)
    token_shape: tuple[int, ...] | None  # (T, Dv); None: image tokens are not cached
    caption_dim: int | None  # P; None: no L_SEM, nothing to cache
    views: tuple[bool, ...]  # flips cached per row

    def names(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for flip in self.views:
            s = "_flip" if flip else ""
            shapes[f"latent_mean{s}"] = shapes[f"latent_std{s}"] = self.latent_shape
            if self.token_shape:
                shapes[f"image_tokens{s}"] = self.token_shape
        if self.caption_dim:
            shapes["caption_embeds"] = (self.caption_dim,)
        return shapes

    def bytes_per_row(self, dtype: str) -> dict[str, int]:
        """Storage per row by kind: latents, image tokens, caption."""
        sizes = {"latents": 0, "image tokens": 0, "caption": 0}
        for name, shape in self.names().items():
            kind = "latents" if name.startswith("latent") else "image tokens" if name.startswith("image") else "caption"
            n = 1
            for d in shape:
                n *= d
            sizes[kind] += n * BYTES[dtype]
        return sizes


def human(n: float) -> str:
    """Bytes in decimal units (as disks are sold): 62.2 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def cost_line(rows: int, layout: Layout, dtype: str) -> str:
    """The disk cost stated before the pass starts, e.g. for EmoSet-118K at 512 px in fp16:
    '118,102 rows x (latents 65.5 kB + image tokens 526.3 kB + caption 1.5 kB) = 70.1 GB (fp16)'."""
    per = layout.bytes_per_row(dtype)
    parts = " + ".join(f"{k} {human(v)}" for k, v in per.items() if v)
    return f"{rows:,} rows x ({parts}) = {human(rows * sum(per.values()))} ({dtype})"


@dataclass
class Plan:
    """What the cache will hold and where: mode 'disk' | 'memory' | 'off'."""

    mode: str
    layout: Layout | None = None
    folder: Path | None = None
    message: str = ""


def plan(cfg: "DataConfig", rows: int, full: Layout, root: Path, key: dict) -> Plan:
    """Decide the cache from data.cache and the free space under `root`; the message states the cost and the reason."""
    if cfg.cache == "off":
        return Plan("off", message="feature cache off (data.cache=off): the frozen encoders run every step")
    lean = replace(full, token_shape=None)
    candidates = [full, lean] if cfg.cache_image_tokens and full.token_shape else [lean]
    need = lambda lay: rows * sum(lay.bytes_per_row(cfg.cache_dtype).values())  # noqa: E731
    cost = lambda lay: cost_line(rows, lay, cfg.cache_dtype)  # noqa: E731
    if cfg.cache == "memory":
        return Plan("memory", candidates[0], None, f"feature cache in memory: {cost(candidates[0])}")
    folders = [root / key_id(full_key(key, lay)) for lay in candidates]
    for lay, folder in zip(candidates, folders):
        if (folder / MANIFEST).exists() and (cfg.cache == "auto" or lay is candidates[0]):
            return Plan("disk", lay, folder, f"feature cache complete at {folder}: {cost(lay)}")
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    for lay, folder in zip(candidates, folders):
        room = free + _bytes_under(folder)  # a half-done cache counts as space
        where = f"at {folder} ({human(room)} free)"
        if need(lay) * 1.05 + 2**30 <= room:  # keep 1 GiB and 5% spare
            note = "" if lay is candidates[0] else " (image tokens left out: they do not fit; the CLIP tower runs every step)"
            return Plan("disk", lay, folder, f"feature cache {where}: {cost(lay)}{note}")
        if cfg.cache == "disk":
            hint = f", data.cache_image_tokens=false ({human(need(lean))})" if lay is not lean else ""
            hint += ", data.cache_dtype=fp16 (half)" if cfg.cache_dtype == "fp32" else ""
            raise ValueError(f"data.cache=disk needs {human(need(lay))} {where}: set data.cache_dir to a larger disk"
                             f"{hint}, or data.cache=off")
    return Plan("off", message=f"feature cache off: {cost(lean)} does not fit under {root} ({human(free)} free); the "
                               "frozen encoders run every step (set data.cache_dir to a larger disk)")


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*")) if folder.is_dir() else 0


@dataclass
class Encoders:
    """The frozen models the pass runs, on the training device in the training dtype."""

    vae: object
    vision: object | None  # None: image tokens not cached
    text_encoder: object | None  # None: captions not cached
    text_projection: object | None
    device: "torch.device"
    dtype: "torch.dtype"


class _Inputs:
    """(row, flip) -> the training set's own preprocessing (the uncached step's exact inputs) plus the flip flag."""

    def __init__(self, training_set: "TrainingSet"):
        self.ts = training_set

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        return {**self.ts[key], "flip": key[1], "row": int(key[0])}

    def __len__(self) -> int:
        return len(self.ts)


def _encode(enc: Encoders, batch: dict, out_dtype) -> dict[str, "torch.Tensor"]:
    """One batch through the frozen encoders: latent mean/std (B, 4, h, w), tokens (B, T, Dv), caption (B, P)."""
    import torch

    from emotrain.model.conditioning import image_tokens

    with torch.no_grad():
        dist = enc.vae.encode(batch["pixel_values"].to(enc.device, enc.dtype)).latent_dist
        out = {"latent_mean": dist.mean, "latent_std": dist.std}
        if enc.vision is not None:
            out["image_tokens"] = image_tokens(enc.vision, batch["clip_pixel_values"].to(enc.device, enc.dtype))
        if enc.text_encoder is not None:
            ids = batch["caption_ids"].to(enc.device)
            out["caption_embeds"] = enc.text_projection(enc.text_encoder(input_ids=ids).pooler_output)
    return {k: v.to("cpu", out_dtype) for k, v in out.items()}


def _shards(rows: Sequence[int]) -> list[list[int]]:
    return [list(rows[i:i + SHARD_ROWS]) for i in range(0, len(rows), SHARD_ROWS)]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def precompute(training_set: "TrainingSet", rows: Sequence[int], plan_: Plan, enc: Encoders, key: dict, rank: int = 0,
               world: int = 1, batch_size: int = 32, num_workers: int = 0, dtype: str = "fp16",
               progress: CacheProgress | None = None) -> dict[int, dict] | None:
    """Encode this rank's shards (index % world == rank) that are not there yet. Disk: written tmp-then-rename,
    returns None; memory: every shard, returned as {shard index: tensors}."""
    import torch
    from safetensors.torch import save_file

    shards = _shards(rows)
    disk = plan_.mode == "disk"
    if disk:
        plan_.folder.mkdir(parents=True, exist_ok=True)
        _write_key(plan_.folder, key, rows, plan_.layout)
        mine = [i for i in range(len(shards)) if i % world == rank]
        todo = [i for i in mine if not (plan_.folder / shard_name(i)).exists()]
    else:
        mine = todo = list(range(len(shards)))
    views = plan_.layout.views
    total = sum(len(shards[i]) for i in mine) * len(views)
    if progress:
        progress("cache", (total - sum(len(shards[i]) for i in todo) * len(views)), total)
    if not todo:
        return None if disk else {}
    keys = [(row, flip) for i in todo for flip in views for row in shards[i]]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(_Inputs(training_set), keys), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_collate_inputs)
    out_dtype = getattr(torch, DTYPES[dtype])
    enc = Encoders(enc.vae, enc.vision if plan_.layout.token_shape else None,
                   enc.text_encoder if plan_.layout.caption_dim else None, enc.text_projection, enc.device, enc.dtype)
    memory: dict[int, dict] = {}
    pending = iter(todo)
    current = next(pending)
    parts: dict[str, list] = {}
    done_rows = 0
    expected = len(shards[current]) * len(views)
    for batch in loader:
        encoded = _encode(enc, batch, out_dtype)
        for j, flip in enumerate(batch["flip"]):
            s = "_flip" if flip else ""
            for name, tensor in encoded.items():
                if name == "caption_embeds":
                    if not flip:
                        parts.setdefault(name, []).append(tensor[j])
                else:
                    parts.setdefault(name + s, []).append(tensor[j])
            done_rows += 1
            if done_rows == expected:  # shard complete: write it, start the next
                tensors = {name: torch.stack(v).contiguous() for name, v in parts.items()}
                tensors["rows"] = torch.tensor(shards[current], dtype=torch.int64)
                if disk:
                    tmp = plan_.folder / f".{shard_name(current)}.{os.getpid()}.tmp"
                    save_file(tensors, str(tmp), metadata={"rank": str(rank), "world": str(world)})
                    tmp.rename(plan_.folder / shard_name(current))  # a shard file that exists is complete
                else:
                    memory[current] = tensors
                if progress:
                    progress("cache", expected, None)
                parts, done_rows = {}, 0
                current = next(pending, None)
                expected = len(shards[current]) * len(views) if current is not None else 0
    return None if disk else memory


def _collate_inputs(samples: list[dict]) -> dict:
    import torch

    batch = {k: torch.stack([s[k] for s in samples]) for k in ("pixel_values", "clip_pixel_values", "caption_ids")}
    batch["flip"] = [s["flip"] for s in samples]
    return batch


def _write_key(folder: Path, key: dict, rows: Sequence[int], layout: Layout) -> None:
    """key.json names what the folder holds (for people, and a check against a hash collision)."""
    path = folder / "key.json"
    body = {"key": key, "rows": len(rows), "shard_rows": SHARD_ROWS, "tensors": {k: list(v) for k, v in layout.names().items()}}
    if path.exists():
        if json.loads(path.read_text())["key"] != key:
            raise ValueError(f"{folder} holds a cache for another key (see its key.json): delete the folder")
        return
    tmp = folder / f".key.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.rename(path)


def finish(plan_: Plan, rows: Sequence[int]) -> None:
    """After every rank's pass: check every shard is there, then write the manifest (rank 0)."""
    missing = [shard_name(i) for i in range(len(_shards(rows))) if not (plan_.folder / shard_name(i)).exists()]
    if missing:
        raise FileNotFoundError(f"feature cache {plan_.folder} lacks {len(missing)} shard(s) (e.g. {missing[0]}) after the "
                                "precompute: on several nodes data.cache_dir must be a filesystem every node sees")
    for stray in plan_.folder.glob(".*.tmp"):  # half-written by a killed pass; every rank is done now
        stray.unlink(missing_ok=True)
    if not (plan_.folder / MANIFEST).exists():
        tmp = plan_.folder / f".manifest.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"shards": len(_shards(rows)), "rows": len(rows)}) + "\n")
        tmp.rename(plan_.folder / MANIFEST)


class FeatureCache:
    """Reads one row's cached tensors: from memory, or from disk shards through memory-mapped safetensors handles
    (opened lazily in each DataLoader worker)."""

    def __init__(self, rows: Sequence[int], layout: Layout, folder: Path | None = None, memory: dict | None = None):
        self.layout, self.folder, self.memory = layout, folder, memory
        self.where = {row: divmod(i, SHARD_ROWS) for i, row in enumerate(rows)}  # row -> (shard, offset)
        self._handles: dict = {}

    def __getstate__(self):  # handles stay in the process that opened them
        return {**self.__dict__, "_handles": {}}

    def get(self, row: int, flip: bool) -> dict[str, "torch.Tensor"]:
        shard, offset = self.where[row]
        s = "_flip" if flip else ""
        names = {"latent_mean": "latent_mean" + s, "latent_std": "latent_std" + s}
        if self.layout.token_shape:
            names["image_tokens"] = "image_tokens" + s
        if self.layout.caption_dim:
            names["caption_embeds"] = "caption_embeds"
        if self.memory is not None:
            return {k: self.memory[shard][name][offset] for k, name in names.items()}
        handle = self._handles.get(shard)
        if handle is None:
            from safetensors import safe_open

            handle = self._handles[shard] = safe_open(str(self.folder / shard_name(shard)), "pt")
        return {k: handle.get_slice(name)[offset:offset + 1][0] for k, name in names.items()}

    def iter_rows(self, rows: Sequence[int]) -> Iterator[tuple[int, dict]]:
        for row in rows:
            yield row, self.get(row, False)


class CachedTrainingSet:
    """The training set read from the cache: a key (row, flip) gives latent mean/std, image tokens (or CLIP pixels when
    tokens are not cached), the caption embedding (or caption ids), the emotion index. No VAE-size image is decoded."""

    def __init__(self, training_set: "TrainingSet", cache: FeatureCache):
        self.ts, self.cache = training_set, cache

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        from PIL import Image

        from emotrain.data import load_image

        row, flip = int(key[0]), bool(key[1])
        item = {**self.cache.get(row, flip), "emotion": self.ts.emotion_index[row]}
        if "image_tokens" not in item:
            image = load_image(self.ts.ds[row][self.ts.cfg.image_column])
            item["clip_pixel_values"] = self.ts.clip_pixels(image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image)
        return item

    def __len__(self) -> int:
        return len(self.ts)


def sample_latents(mean: "torch.Tensor", std: "torch.Tensor") -> "torch.Tensor":
    """A fresh draw from the cached latent distribution, with the same random numbers as diffusers'
    `DiagonalGaussianDistribution.sample()` (so a cached run follows an uncached one draw for draw)."""
    from diffusers.utils.torch_utils import randn_tensor

    return mean + std * randn_tensor(mean.shape, device=mean.device, dtype=mean.dtype)


def prepare(accelerator, cfg: "DataConfig", training_set: "TrainingSet", rows: Sequence[int], enc: Encoders, key: dict,
            full: Layout, progress: CacheProgress | None = None) -> FeatureCache | None:
    """Plan (rank 0 decides), state the cost, encode this rank's missing shards, wait for every rank; the reader or None."""
    from accelerate.utils import broadcast_object_list

    rows = list(rows)
    decided = broadcast_object_list([plan(cfg, len(rows), full, cache_root(cfg), key) if accelerator.is_main_process
                                     else None])[0]
    logger.info("%s", decided.message)
    if decided.mode == "off":
        return None
    num_workers = cfg.num_workers if cfg.num_workers is not None else (4 if enc.device.type == "cuda" else 0)
    if decided.mode == "memory":  # every rank encodes every row into its own memory
        memory = precompute(training_set, rows, decided, enc, key, batch_size=cfg.cache_batch_size,
                            num_workers=num_workers, dtype=cfg.cache_dtype, progress=progress)
        return FeatureCache(rows, decided.layout, memory=memory)
    if not (decided.folder / MANIFEST).exists():
        precompute(training_set, rows, decided, enc, full_key(key, decided.layout),
                   accelerator.process_index, accelerator.num_processes, cfg.cache_batch_size, num_workers,
                   cfg.cache_dtype, progress)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finish(decided, rows)
        accelerator.wait_for_everyone()
    return FeatureCache(rows, decided.layout, folder=decided.folder)


def token_batches(cache: FeatureCache, rows: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], "torch.Tensor"]]:
    """Cached unflipped image tokens of `rows`, a batch at a time: (rows, (b, T, Dv)). The emotion-cluster pass."""
    import torch

    for start in range(0, len(rows), batch_size):
        chunk = list(rows[start:start + batch_size])
        yield chunk, torch.stack([cache.get(row, False)["image_tokens"] for row in chunk])


def make_key(recipe, validated, training_set: "TrainingSet", rows: Sequence[int], encode_dtype: "torch.dtype",
             caption: bool) -> dict:
    """Everything the cached tensors depend on, including which rows are cached (data.emotions picks them); any change
    gives another folder."""
    cfg = recipe.data
    return {
        "format": FORMAT,
        "shard_rows": SHARD_ROWS,
        "rows": {"count": len(rows), "hash": hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]},
        "dataset": dataset_fingerprint(validated.dataset, validated.labels, validated.dataset[cfg.caption_column]),
        "split": cfg.split,
        "columns": [cfg.image_column, cfg.emotion_column, cfg.caption_column],
        "base_model": model_fingerprint(recipe.model.pretrained, recipe.model.revision, "model_index.json"),
        "clip": model_fingerprint(recipe.model.clip, recipe.model.clip_revision, "config.json"),
        "resolution": cfg.resolution,
        "crop": "center",
        "clip_size": training_set.clip_size,
        "clip_norm": [training_set.clip_mean.ravel().tolist(), training_set.clip_std.ravel().tolist()],
        "flip": cfg.random_flip,
        "encode_dtype": str(encode_dtype).removeprefix("torch."),
        "dtype": cfg.cache_dtype,
        "caption_max_length": training_set.tokenizer.model_max_length if caption else None,
    }
