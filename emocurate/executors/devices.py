"""The per-device executor: one spawned worker process per local device, each holding one model at a time.

Workers run the stage table's per-shard functions and return result tables; the driver writes every file. Ingest and the
stages that do not follow `devices` (their own device is set, or they hold no local model) run in this process.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from emocurate.core.config import ConfigError
from emocurate.executors.local import InProcess, on_device, spreads
from emocurate.executors.protocol import IngestShard, ShardResult
from emocurate.stages.table import STAGE, Stage, load_model, run_shard


def resolve_devices(devices: list[str]) -> list[str]:
    """The devices the model stages run on. [auto] = every visible CUDA device when there are several, else [] (one
    process, each stage on its own `device`, exactly as without this key). Raises ConfigError for a device this machine lacks."""
    import torch

    if devices == ["auto"]:
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n > 1 else []
    for device in devices:
        if device.startswith("cuda"):
            n = torch.cuda.device_count()
            index = int(device.split(":")[1]) if ":" in device else 0
            if index >= n:
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                raise ConfigError(f"devices names {device} but this machine has {n} CUDA device(s)"
                                  + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
                                  + ": use devices=auto, or list devices that exist, e.g. devices=[cpu]")
        elif device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("devices names mps but this machine has no MPS device: use devices=auto")
    return list(devices)


# ---------------------------------------------------------------- in a worker process
_worker: dict = {}  # this worker's device, recipe and run folder, and the one model it holds (with its stage)


def _start_worker(recipe, run_dir: str, devices, cpu_threads: int) -> None:
    start = time.perf_counter()
    import torch

    device = devices.get()  # each worker takes one device off the queue: one worker per listed device
    if device == "cpu":
        torch.set_num_threads(cpu_threads)  # CPU workers share the cores instead of each taking all of them
    elif device.startswith("cuda"):
        torch.cuda.set_device(device)
    # the worker's start-up counts as part of its first model load in the stage summary
    _worker.update(device=device, recipe=recipe, run_dir=Path(run_dir), stage=None, startup_s=time.perf_counter() - start)


def _run_shard(stage: str, shard: int, keys: pa.Table) -> ShardResult:
    """One shard on this worker's device (the model loaded first if this worker held another stage's)."""
    w, load_s = _worker, 0.0
    if w["stage"] != stage:
        _free_model()
        start = time.perf_counter()
        w["stage_recipe"] = on_device(w["recipe"], stage, w["device"])
        w["model"], w["info"] = load_model(STAGE[stage], w["stage_recipe"], w["run_dir"])
        w["stage"], load_s = stage, time.perf_counter() - start + w.pop("startup_s", 0.0)
    table = run_shard(STAGE[stage], w["stage_recipe"], w["model"], w["run_dir"], shard, keys)
    return ShardResult(shard, table, w["info"], load_s)


def _free_model() -> None:
    """One model per worker: the previous stage's is released before the next one loads."""
    if _worker.pop("model", None) is not None:
        import gc

        import torch

        gc.collect()
        if _worker["device"].startswith("cuda"):
            torch.cuda.empty_cache()
    _worker["stage"] = None


# ---------------------------------------------------------------- in the driver
class Devices:
    """One worker process per device ("spawn": CUDA-safe), started on first use and kept across stages."""

    def __init__(self, recipe, run_dir: Path, devices: list[str]):
        self.recipe, self.run_dir, self.devices = recipe, Path(run_dir), list(devices)
        self.here = InProcess(recipe, run_dir)
        self.executor = None

    def ingest(self, shards: Iterable[IngestShard]) -> Iterator[tuple[int, pa.Table]]:
        return self.here.ingest(shards)

    def run(self, stage: Stage, todo: dict[int, pa.Table], tick: Callable[[int], None]) -> Iterator[ShardResult]:
        if not spreads(self.recipe, stage.name):
            yield from self.here.run(stage, todo, tick)
            return
        if not todo:
            return
        if self.executor is None:
            self._start()
        futures = [self.executor.submit(_run_shard, stage.name, s, keys) for s, keys in sorted(todo.items())]
        try:
            for future in as_completed(futures):
                result = future.result()
                tick(result.table.num_rows)
                yield result
        finally:  # after an error, shards not yet started are not started; finished ones are already written
            for future in futures:
                future.cancel()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        devices = context.Queue()
        for device in self.devices:
            devices.put(device)
        cpu_threads = max(1, (os.cpu_count() or 1) // max(1, self.devices.count("cpu")))
        self.executor = ProcessPoolExecutor(len(self.devices), mp_context=context, initializer=_start_worker,
                                            initargs=(self.recipe, str(self.run_dir), devices, cpu_threads))

    def close(self) -> None:
        self.here.close()
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None
