"""The in-process executor: ingest decoded in threads here, each model stage loaded once in this process.

Used on a machine with one device (or none); on several local devices, executors/devices.py hands it the stages it does
not spread. It writes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import pyarrow as pa

from emocurate.executors.protocol import IngestShard, ShardResult
from emocurate.stages.ingest import ingest_shard
from emocurate.stages.table import Stage, load_model, run_shard


def on_device(recipe, stage: str, device: str):
    """A copy of `recipe` whose `stage` loads its model on `device`."""
    out = copy.copy(recipe)
    setattr(out, stage, dataclasses.replace(getattr(recipe, stage), device=device))
    return out


def spreads(recipe, stage: str) -> bool:
    """Whether a model stage follows the recipe's `devices`: only when its own `device` is auto and it holds a model
    here (the openai caption backend holds none; vLLM places itself, through `caption.vllm_args`)."""
    cfg = getattr(recipe, stage)
    return cfg.device == "auto" and not (stage == "caption" and cfg.backend in ("openai", "vllm"))


class InProcess:
    """Every stage in this process; with `device`, stages whose device is auto load their model there."""

    def __init__(self, recipe, run_dir: Path, device: Optional[str] = None):
        self.recipe, self.run_dir, self.device = recipe, Path(run_dir), device
        self.models: dict[str, tuple] = {}

    def ingest(self, shards: Iterable[IngestShard]) -> Iterator[tuple[int, pa.Table]]:
        r = self.recipe
        for s in shards:
            yield s.index, ingest_shard(s.items, s.index, s.first_seq, r.max_image_pixels, r.max_image_side, r.decode_workers)

    def _recipe_for(self, stage: str):
        if self.device is not None and spreads(self.recipe, stage):
            return on_device(self.recipe, stage, self.device)
        return self.recipe

    def run(self, stage: Stage, todo: dict[int, pa.Table], tick: Callable[[int], None]) -> Iterator[ShardResult]:
        recipe = self._recipe_for(stage.name)
        for shard, keys in sorted(todo.items()):
            load_s = 0.0
            if stage.name not in self.models:
                start = time.perf_counter()
                self.models[stage.name] = load_model(stage, recipe, self.run_dir)
                load_s = time.perf_counter() - start
            model, info = self.models[stage.name]
            yield ShardResult(shard, run_shard(stage, recipe, model, self.run_dir, shard, keys, tick), info, load_s)

    def close(self) -> None:
        self.models.clear()
