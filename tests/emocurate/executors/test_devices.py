"""The local executor's model stages on several devices (two CPU worker processes) against the one-process build."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from emocurate.executors import devices as device_workers
from emocurate.run import driver as pipeline
from emocurate.core.config import ConfigError
from emocurate.recipe import load_recipe
from tests.helpers.images import mixed_input_overrides
from tests.helpers.records import assert_same_tables
from tests.helpers.paths import REPO

ROOT = REPO
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"
ON_DEVICES = ["classify.device=auto", "caption.device=auto", "clip_filter.device=auto"]  # the demo pins them to cpu


overrides = mixed_input_overrides



def shard_tables(run: Path) -> dict:
    return {str(p.relative_to(run)): pq.read_table(p) for p in sorted((run / "shards").rglob("*.parquet"))}


def test_two_cpu_workers_give_the_records_of_one_process(inputs, tmp_path, monkeypatch):
    one = tmp_path / "one"
    pipeline.build(load_recipe(DEMO, overrides(inputs)), one, publish=False)

    on_workers = []  # (stage, shard) as the device executor hands each worker's result back to the driver
    run = device_workers.Devices.run

    def counting(self, stage, todo, tick):
        for result in run(self, stage, todo, tick):
            if self.executor is not None:  # computed by the worker processes, not in this one
                on_workers.append((stage.name, result.shard))
            yield result

    monkeypatch.setattr(device_workers.Devices, "run", counting)
    two = tmp_path / "two"
    summary = pipeline.build(load_recipe(DEMO, overrides(inputs, *ON_DEVICES, "devices=[cpu,cpu]")), two, publish=False)

    assert summary["records"] == 9 and summary["stages"]["classify"]["items"] == 7  # 1 copy, 1 bad
    assert sorted(s for stage, s in on_workers if stage == "classify") == [0, 1, 2]  # every shard came from a worker
    assert {stage for stage, _ in on_workers} == {"classify", "caption", "clip_filter"}
    assert summary["stages"]["classify"]["load_s"] > 0  # the workers' model loads are reported
    a, b = pq.read_table(one / "records.parquet"), pq.read_table(two / "records.parquet")
    assert_same_tables(a, b, "records")  # ids, statuses, emotions, captions equal; scores within SCORE_TOLERANCE
    assert any(r["caption"] for r in b.to_pylist())  # something was captioned and scored
    ta, tb = shard_tables(one), shard_tables(two)
    assert sorted(ta) == sorted(tb)
    for key in ta:
        assert_same_tables(ta[key], tb[key], key)
    assert sorted(p.name for p in (two / "shards" / "caption").iterdir()) == sorted(
        p.name for p in (one / "shards" / "caption").iterdir())  # the same done markers
    assert json.loads((one / "models.json").read_text()) == json.loads((two / "models.json").read_text())

    # a rerun has nothing left to do: no worker starts
    on_workers.clear()
    again = pipeline.build(load_recipe(DEMO, overrides(inputs, *ON_DEVICES, "devices=[cpu,cpu]")), two, publish=False)
    assert on_workers == [] and again["stages"]["classify"]["items"] == 0

    # a one-process run stopped after classify resumes on the workers: classify is not redone, the records are the same
    mixed = tmp_path / "mixed"
    shutil.copytree(one, mixed)
    for stage in ("caption", "clip_filter"):
        shutil.rmtree(mixed / "shards" / stage)
    (mixed / "records.parquet").unlink()
    stamp = (mixed / "shards" / "classify" / "00000.done").stat().st_mtime_ns
    pipeline.build(load_recipe(DEMO, overrides(inputs, *ON_DEVICES, "devices=[cpu,cpu]")), mixed, publish=False)
    assert {stage for stage, _ in on_workers} == {"caption", "clip_filter"}
    assert (mixed / "shards" / "classify" / "00000.done").stat().st_mtime_ns == stamp
    assert_same_tables(pq.read_table(mixed / "records.parquet"), a, "resumed records")


def test_bad_devices_are_config_errors_before_any_work(inputs, tmp_path):
    with pytest.raises(ConfigError, match="devices must be auto or a list of cpu, cuda, cuda:N, mps.*'gpu0'"):
        load_recipe(DEMO, overrides(inputs, "devices=[gpu0,gpu1]"))
    with pytest.raises(ConfigError, match="devices is empty"):
        load_recipe(DEMO, overrides(inputs, "devices=[]"))
    with pytest.raises(ConfigError, match="devices names cuda:99 but this machine has"):
        pipeline.build(load_recipe(DEMO, overrides(inputs, "devices=[cuda:99]")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_auto_uses_one_process_unless_several_gpus():
    import torch

    n = torch.cuda.device_count()
    assert device_workers.resolve_devices(["auto"]) == ([f"cuda:{i}" for i in range(n)] if n > 1 else [])
    recipe = load_recipe(DEMO, ["caption.backend=openai", "clip_filter.device=auto"])
    assert not device_workers.spreads(recipe, "classify")  # pinned to cpu by the demo recipe
    assert not device_workers.spreads(recipe, "caption")  # no model held here
    assert device_workers.spreads(recipe, "clip_filter")
    moved = device_workers.on_device(recipe, "clip_filter", "cuda:1")
    assert moved.clip_filter.device == "cuda:1" and recipe.clip_filter.device == "auto" and moved.classify is recipe.classify
