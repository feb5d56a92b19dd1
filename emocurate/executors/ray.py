"""`emocurate build --executor ray`: ingest and the model stages run on a Ray cluster; the driver writes every file.

Ingest runs as Ray tasks (one per shard); each model stage runs through Ray Data `map_batches` on an actor pool, each
actor holding one model (with `num_gpus` from the recipe's `ray:` section). Actors call the stage table's per-shard
functions, so either executor resumes the other's run. Workers read image bytes from RUN: on a cluster it must be
shared storage. It plans nothing: the driver (emocurate/run/driver.py) hands it the shards a stage still needs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import pyarrow as pa

from emocurate.executors.protocol import IngestShard, ShardResult
from emocurate.recipe import RayStageConfig
from emocurate.stages.table import STAGE, Stage, load_model, run_shard

WORKER_ENV = ("EMOCURATE_TINY_CACHE", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE")
"""Variables the driver passes on to workers of an existing cluster (a local runtime's workers inherit everything).
Secrets (HF_TOKEN, API keys) are not among them: set those in each node's environment."""


# ---------------------------------------------------------------- the work a worker does
def _to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


class ShardWorker:
    """A Ray Data actor: loads one stage's model once, then turns (shard, keys) rows into (shard, result table) rows."""

    def __init__(self, stage: str, recipe, run_dir: str):
        self.stage, self.recipe, self.run_dir = STAGE[stage], recipe, Path(run_dir)
        start = time.perf_counter()
        self.model, self.info = load_model(self.stage, recipe, self.run_dir)
        self.load_s = time.perf_counter() - start
        self.reported = False

    def __call__(self, batch: dict) -> dict:
        out = {"shard": [], "table": [], "model": [], "load_s": []}
        for shard, keys in zip(batch["shard"], batch["keys"]):
            table = run_shard(self.stage, self.recipe, self.model, self.run_dir, int(shard), _from_ipc(keys))
            out["shard"].append(int(shard))
            out["table"].append(_to_ipc(table))
            out["model"].append(json.dumps(self.info))
            out["load_s"].append(0.0 if self.reported else self.load_s)  # counted once per actor
            self.reported = True
        return out


def _ingest_task(items, shard: int, first_seq: int, max_pixels: int, max_side: int) -> bytes:
    """One shard per task and one CPU per task: Ray runs the shards in parallel, so one decoding thread each."""
    from emocurate.stages.ingest import ingest_shard

    return _to_ipc(ingest_shard(items, shard, first_seq, max_pixels, max_side))


# ---------------------------------------------------------------- placement
def stage_placement(stage: str, recipe, scfg: RayStageConfig, cluster_gpus: float) -> tuple[float, int]:
    """(GPUs per actor, number of actors) for a model stage on a cluster with `cluster_gpus` GPUs."""
    stage_cfg = getattr(recipe, stage)
    uses_gpu = (cluster_gpus > 0 and scfg.num_gpus > 0 and getattr(stage_cfg, "device", "auto") != "cpu"
                and not (stage == "caption" and stage_cfg.backend == "openai"))
    gpus = float(scfg.num_gpus) if uses_gpu else 0.0
    if gpus > cluster_gpus:
        raise ValueError(f"ray.{stage}.num_gpus={gpus} but the cluster has {cluster_gpus:g} GPUs")
    actors = scfg.actors or (max(1, int(cluster_gpus // gpus)) if gpus else 1)
    return gpus, actors


# ---------------------------------------------------------------- the executor
class RayExecutor:
    """Holds a Ray session (a local runtime behind the loopback guard, or an existing cluster at `address`)."""

    def __init__(self, recipe, run_dir: Path, address: Optional[str] = None, allow_network: bool = False,
                 num_cpus: Optional[int] = None):
        from emocurate.executors.ray_runtime import ray_session

        self.recipe, self.run_dir, self.cfg = recipe, Path(run_dir).resolve(), recipe.ray
        env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ} if address else None
        self._session = contextlib.ExitStack()
        self._session.enter_context(ray_session(address=address, num_cpus=num_cpus, allow_network=allow_network,
                                                env_vars=env))

    def _resources(self) -> dict:
        import ray

        return ray.cluster_resources()

    def ingest(self, shards: Iterable[IngestShard]) -> Iterator[tuple[int, pa.Table]]:
        """Each shard decoded by a Ray task, at most `ray.ingest_in_flight` at once (0: twice the cluster's CPUs)."""
        import ray

        r = self.recipe
        in_flight = self.cfg.ingest_in_flight or max(2, 2 * int(self._resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1)(_ingest_task)
        pending: dict = {}  # ObjectRef -> shard index

        def ready(limit: int) -> Iterator[tuple[int, pa.Table]]:
            while len(pending) > limit:
                done, _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(done[0]), _from_ipc(ray.get(done[0]))

        for s in shards:
            pending[task.remote(s.items, s.index, s.first_seq, r.max_image_pixels, r.max_image_side)] = s.index
            yield from ready(in_flight)
        yield from ready(0)

    def run(self, stage: Stage, todo: dict[int, pa.Table], tick: Callable[[int], None]) -> Iterator[ShardResult]:
        """Every shard of `todo` through an actor pool, results as they arrive."""
        import ray

        if not todo:
            return
        scfg = getattr(self.cfg, stage.name)
        gpus, actors = stage_placement(stage.name, self.recipe, scfg, float(self._resources().get("GPU", 0)))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller shows progress; Ray Data's bars would fight with it
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-operator INFO lines on every dataset run
        items = [{"shard": s, "keys": _to_ipc(keys)} for s, keys in sorted(todo.items())]
        results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardWorker, fn_constructor_kwargs=dict(stage=stage.name, recipe=self.recipe, run_dir=str(self.run_dir)),
            batch_size=1,  # one shard per call: the per-shard function sees exactly the rows (and batches) it does locally
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(items))), num_gpus=gpus, num_cpus=scfg.num_cpus,
        )
        for row in results.iter_rows():
            table = _from_ipc(row["table"])
            tick(table.num_rows)
            yield ShardResult(int(row["shard"]), table, json.loads(row["model"]), float(row["load_s"]))

    def close(self) -> None:
        self._session.close()
