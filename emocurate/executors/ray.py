"""`emocurate build --executor ray`: the pipeline's stages over the same shards, run on a Ray cluster.

Ingest runs as Ray tasks (one per shard); classify, caption and CLIP scoring run through Ray Data `map_batches` on actor
pools, each actor holding one model (with `num_gpus` from the recipe's `ray:` section). Workers call the same pure
per-shard functions as the local executor; the driver writes the same shard files, done markers and records.parquet,
so either executor resumes the other's run. Workers read image bytes from RUN: on a cluster it must be shared storage.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa

WORKER_ENV = ("EMOCURATE_TINY_CACHE", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE")
"""Variables the driver passes on to workers of an existing cluster (a local runtime's workers inherit everything).
Secrets (HF_TOKEN, API keys) are not among them: set those in each node's environment."""


@dataclass
class RayStageConfig:
    num_gpus: float = 1.0
    """GPUs each actor of this stage holds its model on (0.5 puts two actors on one GPU). Ignored (0) when the cluster
    has no GPU, when the stage's `device` is 'cpu', and for the openai caption backend (no local model)."""
    actors: int = 0
    """Actor pool size; 0 = as many as the cluster's GPUs allow (cluster GPUs / num_gpus), or 1 without GPUs."""
    num_cpus: float = 1.0
    """CPUs each actor reserves (it decodes its shard's images)."""

    def __post_init__(self):
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, (int, float)) or self.num_gpus < 0:
            raise ValueError(f"num_gpus must be a number >= 0; got {self.num_gpus!r}")
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 0:
            raise ValueError(f"actors must be an integer >= 0 (0 = automatic); got {self.actors!r}")
        if isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, (int, float)) or self.num_cpus <= 0:
            raise ValueError(f"num_cpus must be a number > 0; got {self.num_cpus!r}")


@dataclass
class RayConfig:
    """How `--executor ray` places the stages; the local executor ignores it."""

    classify: RayStageConfig = field(default_factory=RayStageConfig)
    caption: RayStageConfig = field(default_factory=RayStageConfig)
    clip_filter: RayStageConfig = field(default_factory=RayStageConfig)
    ingest_in_flight: int = 0
    """Ingest shards decoded at once as Ray tasks; 0 = twice the cluster's CPUs."""

    def __post_init__(self):
        if isinstance(self.ingest_in_flight, bool) or not isinstance(self.ingest_in_flight, int) or self.ingest_in_flight < 0:
            raise ValueError(f"ray.ingest_in_flight must be an integer >= 0 (0 = automatic); got {self.ingest_in_flight!r}")


# ---------------------------------------------------------------- the work a worker does
def _to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def load_stage_model(stage: str, recipe, run_dir: Path):
    """The stage's model, loaded exactly as the local executor loads it; returns (model, provenance dict)."""
    if stage == "classify":
        from emocurate.stages.classify import load_classifier
        from emocurate.run.folder import classifier_emotions

        model = load_classifier(recipe.classify, classifier_emotions(run_dir))
        extra = {"emotions": list(model.emotions)}
    elif stage == "caption":
        from emocurate.stages.caption.contract import load_captioner

        model = load_captioner(recipe.caption)
        extra = {"prompt": model.prompt_text("{emotion}")}
    elif stage == "clip_filter":
        from emocurate.stages.clip_filter import load_scorer

        model = load_scorer(recipe.clip_filter)
        extra = {}
    else:
        raise ValueError(f"unknown model stage {stage!r}")
    return model, {"backend": model.backend, "model": model.model_id, "revision": model.revision, **extra}


def run_shard(stage: str, recipe, model, run_dir: Path, shard: int, keys: pa.Table) -> pa.Table:
    """One shard of one model stage: the same pure function the local executor calls, on the same rows."""
    from emocurate.stages import per_shard as shard_stages
    from emocurate.run.driver import _rows_with_bytes

    rows = _rows_with_bytes(run_dir, shard, keys)
    if stage == "classify":
        return shard_stages.classify_shard(rows, model, recipe.classify.batch_size)
    if stage == "caption":
        return shard_stages.caption_shard(rows, model, recipe.caption.batch_size)
    return shard_stages.clipscore_shard(rows, model, recipe.clip_filter.batch_size)


class ShardWorker:
    """A Ray Data actor: loads one stage's model once, then turns (shard, keys) rows into (shard, result table) rows."""

    def __init__(self, stage: str, recipe, run_dir: str):
        self.stage, self.recipe, self.run_dir = stage, recipe, Path(run_dir)
        start = time.perf_counter()
        self.model, self.info = load_stage_model(stage, recipe, self.run_dir)
        self.load_s = time.perf_counter() - start

    def __call__(self, batch: dict) -> dict:
        out = {"shard": [], "table": [], "model": [], "load_s": []}
        for shard, keys in zip(batch["shard"], batch["keys"]):
            table = run_shard(self.stage, self.recipe, self.model, self.run_dir, int(shard), _from_ipc(keys))
            out["shard"].append(int(shard))
            out["table"].append(_to_ipc(table))
            out["model"].append(json.dumps(self.info))
            out["load_s"].append(self.load_s)
        return out


def _ingest_task(items, shard: int, first_seq: int, max_pixels: int, max_side: int) -> bytes:
    """One shard per task and one CPU per task: Ray runs the shards in parallel, so one decoding thread each."""
    from emocurate.stages.ingest import ingest_shard

    return _to_ipc(ingest_shard(items, shard, first_seq, max_pixels, max_side))


# ---------------------------------------------------------------- the driver
def _cluster_resources() -> dict:
    import ray

    return ray.cluster_resources()


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


def run_model_stage(stage: str, recipe, run_dir: Path, todo: dict[int, pa.Table], scfg: RayStageConfig,
                    on_shard: Callable[[int, pa.Table, dict], None]) -> float:
    """Every shard in `todo` (shard -> key table) through an actor pool; `on_shard` gets each result as it arrives.
    Returns the longest model load among the actors (seconds; they load in parallel)."""
    import ray

    if not todo:
        return 0.0
    gpus, actors = stage_placement(stage, recipe, scfg, float(_cluster_resources().get("GPU", 0)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows progress; Ray Data's bars would fight with it
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-operator INFO lines on every dataset run
    items = [{"shard": s, "keys": _to_ipc(keys)} for s, keys in sorted(todo.items())]
    results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardWorker, fn_constructor_kwargs=dict(stage=stage, recipe=recipe, run_dir=str(run_dir)),
        batch_size=1,  # one shard per call: the pure function sees exactly the rows (and batches) the local executor does
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(items))), num_gpus=gpus, num_cpus=scfg.num_cpus,
    )
    load_s = 0.0
    for row in results.iter_rows():
        on_shard(int(row["shard"]), _from_ipc(row["table"]), json.loads(row["model"]))
        load_s = max(load_s, float(row["load_s"]))
    return load_s


def ingest_all(recipe, run_dir: Path, progress, in_flight: int, crawl_cfg=None) -> int:
    """Like the local ingest: sources read in order on the driver, each full shard decoded by a Ray task."""
    import ray

    from emocurate.store import shards
    from emocurate.run.folder import INGEST_COMPLETE, n_ingest_shards
    from emocurate.sources import iter_items

    done = n_ingest_shards(run_dir)
    if done is not None:
        return done
    task = ray.remote(num_cpus=1)(_ingest_task)
    pending: dict = {}  # ObjectRef -> shard index

    def drain(limit: int) -> None:
        while len(pending) > limit:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shards.write_shard(run_dir, "ingest", pending.pop(ready[0]), _from_ipc(ray.get(ready[0])))

    index, seq, buffer = 0, 0, []
    for item in iter_items(recipe.sources, run_dir, recipe.limit, progress, crawl_cfg, recipe.follow_symlinks):
        buffer.append(None if shards.is_done(run_dir, "ingest", index) else item)  # stored shards: only counted
        progress("ingest", 1, recipe.limit)
        if len(buffer) == recipe.shard_size:
            if not shards.is_done(run_dir, "ingest", index):
                pending[task.remote(buffer, index, seq, recipe.max_image_pixels, recipe.max_image_side)] = index
                drain(in_flight)
            index, seq, buffer = index + 1, seq + len(buffer), []
    if buffer:
        if not shards.is_done(run_dir, "ingest", index):
            pending[task.remote(buffer, index, seq, recipe.max_image_pixels, recipe.max_image_side)] = index
        index, seq = index + 1, seq + len(buffer)
    drain(0)
    progress("ingest", 0, seq)  # the total is known now: completes the bar
    shards.write_json_atomic(run_dir / INGEST_COMPLETE, {"shards": index, "items": seq})
    return index


def build(recipe, run_dir: str | Path, progress=None, address: Optional[str] = None, allow_network: bool = False,
          publish: bool = True, num_cpus: Optional[int] = None, crawl_cfg=None) -> dict:
    """Run (or resume) every stage on Ray, then decide and publish on the driver; returns the local build's summary.

    `address`: an existing cluster ("auto", "ray://head:10001"); None starts a local runtime behind the loopback
    guard (emocurate.executors.ray_runtime), with `num_cpus` CPUs (None = all).
    """
    from emocurate.run import driver as pipeline
    from emocurate.store import shards
    from emocurate.run.decide import CAPTION_SCHEMA, CLIPSCORE_SCHEMA, NOT_SCORED
    from emocurate.stages.ingest import META_COLUMNS
    from emocurate.core.progress import no_progress
    from emocurate.run.publish import publish_records
    from emocurate.executors.ray_runtime import ray_session
    from emocurate.run.folder import prepare_run

    progress = progress or no_progress
    run_dir = Path(run_dir).resolve()  # workers may not share the driver's working directory
    prepare_run(run_dir, recipe)
    cfg = getattr(recipe, "ray", None) or RayConfig()
    crawl_cfg = crawl_cfg if crawl_cfg is not None else getattr(recipe, "crawl", None)
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ} if address else None
    models_path = run_dir / "models.json"
    models_info = json.loads(models_path.read_text()) if models_path.exists() else {}
    stages: dict[str, dict] = {}

    def noting(stage: str, write: Callable[[int, pa.Table], None]):
        def on_shard(shard: int, table: pa.Table, info: dict) -> None:
            if models_info.get(stage) != info:
                models_info[stage] = info
                shards.write_json_atomic(models_path, models_info)
            write(shard, table)
            progress(stage if stage != "clip_filter" else "clip_score", table.num_rows)
        return on_shard

    def model_stage(name: str, stage: str, todo: dict[int, pa.Table], write: Callable[[int, pa.Table], None]) -> None:
        """Run one model stage and note it in the summary as the local build does: items, seconds, model load."""
        progress(name, 0, sum(t.num_rows for t in todo.values()))
        start = time.perf_counter()
        load_s = run_model_stage(stage, recipe, run_dir, todo, getattr(cfg, stage), noting(stage, write))
        stages[name] = {"seconds": round(time.perf_counter() - start, 3), "load_s": round(load_s, 3),
                        "items": sum(t.num_rows for t in todo.values())}

    with ray_session(address=address, num_cpus=num_cpus, allow_network=allow_network, env_vars=env):
        in_flight = cfg.ingest_in_flight or max(2, 2 * int(_cluster_resources().get("CPU", 1)))
        start = time.perf_counter()
        n = ingest_all(recipe, run_dir, progress, in_flight, crawl_cfg)
        if n == 0:
            raise ValueError(f"the sources {recipe.sources} gave no items: nothing to curate")
        meta = shards.read_stage(run_dir, "ingest", n, META_COLUMNS)
        stages["ingest"] = {"seconds": round(time.perf_counter() - start, 3), "load_s": 0.0, "items": meta.num_rows}

        todo = {s: pa.table({"id": ids}) for s, ids in enumerate(pipeline._first_new_ids(meta, n))
                if ids and not shards.is_done(run_dir, "classify", s)}
        model_stage("classify", "classify", todo, lambda s, t: shards.write_shard(run_dir, "classify", s, t))

        todo = pipeline._pending(pipeline.decide_run(run_dir, recipe, n), "caption", "emotion")
        model_stage("caption", "caption", todo, lambda s, t: pipeline._merge_into_shard(
            run_dir, "caption", s, t, ["id", "caption_emotion"], CAPTION_SCHEMA))

        todo = pipeline._pending(pipeline.decide_run(run_dir, recipe, n), "clip_filter", "caption", NOT_SCORED)
        model_stage("clip_score", "clip_filter", todo, lambda s, t: pipeline._merge_into_shard(
            run_dir, "clipscore", s, t, ["id", "caption"], CLIPSCORE_SCHEMA))
    records = pipeline.decide_run(run_dir, recipe, n)
    shards.write_parquet_atomic(run_dir / "records.parquet", records)
    dataset, why_not = None, "--no-publish"
    if publish:
        start = time.perf_counter()
        dataset, why_not = publish_records(run_dir, recipe, records)
        stages["publish"] = {"seconds": round(time.perf_counter() - start, 3), "load_s": 0.0, "items": None}
    return pipeline.summarize(records, stages, dataset, why_not)
