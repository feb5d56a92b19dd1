"""Feature-cache files: the precompute pass that encodes a rank's shards (written tmp-then-rename: a shard file that exists
is complete), the manifest written last, and the readers the training step uses (no image decoded).

It does not decide whether or where to cache, nor what the key is (cache.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

if TYPE_CHECKING:
    import torch

    from emotrain.cache import Layout, Plan
    from emotrain.data import TrainingSet

SHARD_ROWS = 256
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
MANIFEST = "manifest.json"  # written last: its presence means every shard is there

CacheProgress = Callable[[str, int, Optional[int]], None]
"""progress(task, advance, total): the shape of emocurate.core.progress.Progress."""


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
        return {**self.ts[key], "flip": key[1]}

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


def precompute(training_set: "TrainingSet", rows: Sequence[int], plan_: "Plan", enc: Encoders, key: dict, rank: int = 0,
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


def _write_key(folder: Path, key: dict, rows: Sequence[int], layout: "Layout") -> None:
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


def finish(plan_: "Plan", rows: Sequence[int]) -> None:
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

    def __init__(self, rows: Sequence[int], layout: "Layout", folder: Path | None = None, memory: dict | None = None):
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


def token_batches(cache: FeatureCache, rows: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], "torch.Tensor"]]:
    """Cached unflipped image tokens of `rows`, a batch at a time: (rows, (b, T, Dv)). The emotion-cluster pass."""
    import torch

    for start in range(0, len(rows), batch_size):
        chunk = list(rows[start:start + batch_size])
        yield chunk, torch.stack([cache.get(row, False)["image_tokens"] for row in chunk])
