"""Feature cache for training: per training row, the frozen encoders' outputs computed once (VAE latent mean + std, CLIP
image tokens, the caption's pooled projected embedding) so that a step runs only what the method must.

This module decides what is cached and where: the key (dataset fingerprint, model ids + revisions, resolution, crop,
flip, dtypes; a change starts a new folder), the disk cost stated before the pass, auto|memory|disk|off, and runs the
pass across ranks. The shard files and their readers are in cache_shards.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from emotrain import cache_shards
from emotrain.cache_shards import MANIFEST, CacheProgress, Encoders, FeatureCache

if TYPE_CHECKING:
    import torch

    from emotrain.data import TrainingSet
    from emotrain.recipe import DataConfig

logger = logging.getLogger(__name__)

FORMAT = 1
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


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
    from emocurate.core.hub import hub_revision

    return {"id": model_id, "revision": revision, "resolved": hub_revision(model_id, revision, probe_file)}


def dataset_fingerprint(ds, labels: Sequence[str], captions: Sequence[str]) -> dict:
    """The `datasets` fingerprint plus a hash of the labels and captions (an edited caption changes the cache)."""
    digest = hashlib.sha256()
    for label, caption in zip(labels, captions):
        digest.update(f"{label}\t{caption}\n".encode())
    return {"fingerprint": getattr(ds, "_fingerprint", None), "rows": len(labels), "labels_captions": digest.hexdigest()[:16]}


def make_key(recipe, validated, training_set: "TrainingSet", rows: Sequence[int], encode_dtype: "torch.dtype",
             caption: bool) -> dict:
    """Everything the cached tensors depend on, including which rows are cached (data.emotions picks them); any change
    gives another folder."""
    cfg = recipe.data
    return {
        "format": FORMAT,
        "shard_rows": cache_shards.SHARD_ROWS,
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
        memory = cache_shards.precompute(training_set, rows, decided, enc, key, batch_size=cfg.cache_batch_size,
                            num_workers=num_workers, dtype=cfg.cache_dtype, progress=progress)
        return FeatureCache(rows, decided.layout, memory=memory)
    if not (decided.folder / MANIFEST).exists():
        cache_shards.precompute(training_set, rows, decided, enc, full_key(key, decided.layout),
                   accelerator.process_index, accelerator.num_processes, cfg.cache_batch_size, num_workers,
                   cfg.cache_dtype, progress)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            cache_shards.finish(decided, rows)
        accelerator.wait_for_everyone()
    return FeatureCache(rows, decided.layout, folder=decided.folder)
