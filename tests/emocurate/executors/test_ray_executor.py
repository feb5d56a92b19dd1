"""`--executor ray` on a local Ray runtime (CPU, tiny models, loopback guard on) against the local executor."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from emocurate.run import driver as pipeline  # noqa: E402
from emocurate.core.config import ConfigError  # noqa: E402
from emocurate.executors.ray import RayStageConfig, stage_placement  # noqa: E402
from emocurate.recipe import load_recipe  # noqa: E402
from tests.helpers.images import mixed_input_overrides  # noqa: E402
from tests.helpers.records import assert_same_tables  # noqa: E402
from tests.helpers.paths import REPO

ROOT = REPO
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"


def overrides(folder):
    return mixed_input_overrides(folder, "ray.classify.actors=1")



@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory):
    run = tmp_path_factory.mktemp("local") / "run"
    pipeline.build(load_recipe(DEMO, overrides(inputs)), run)
    return run


def shard_files(run: Path) -> dict[str, object]:
    """Every shard table and done marker of a run folder, by relative path."""
    out = {}
    for path in sorted((run / "shards").rglob("*")):
        if path.suffix == ".parquet":
            out[str(path.relative_to(run))] = pq.read_table(path)
        elif path.suffix in (".done", ".json"):
            out[str(path.relative_to(run))] = json.loads(path.read_text())
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Same records, shard files and done markers (scores within SCORE_TOLERANCE: other processes, other threads)."""
    assert_same_tables(pq.read_table(a / "records.parquet"), pq.read_table(b / "records.parquet"), "records")
    fa, fb = shard_files(a), shard_files(b)
    assert sorted(fa) == sorted(fb)
    for key in fa:
        if isinstance(fa[key], dict):
            assert fa[key] == fb[key], key
        else:
            assert_same_tables(fa[key], fb[key], key)
    assert json.loads((a / "models.json").read_text()) == json.loads((b / "models.json").read_text())


def test_stage_placement_follows_the_recipe_and_the_cluster():
    recipe = load_recipe(DEMO, ["caption.device=auto", "clip_filter.device=auto", "caption.backend=openai"])
    assert stage_placement("classify", recipe, RayStageConfig(num_gpus=1), 4) == (0.0, 1)  # device: cpu in the demo
    assert stage_placement("clip_filter", recipe, RayStageConfig(num_gpus=0.5), 4) == (0.5, 8)
    assert stage_placement("clip_filter", recipe, RayStageConfig(num_gpus=1, actors=2), 4) == (1.0, 2)
    assert stage_placement("clip_filter", recipe, RayStageConfig(num_gpus=1), 0) == (0.0, 1)  # no GPU in the cluster
    assert stage_placement("caption", recipe, RayStageConfig(num_gpus=1), 4) == (0.0, 1)  # openai: nothing to hold
    with pytest.raises(ValueError, match="cluster has 1 GPUs"):
        stage_placement("clip_filter", recipe, RayStageConfig(num_gpus=2), 1)
    with pytest.raises(ConfigError, match="num_gpus must be a number >= 0"):
        load_recipe(DEMO, ["ray.caption.num_gpus=-1"])


@pytest.mark.slow
def test_ray_executor_writes_what_the_local_executor_writes(inputs, local_run, tmp_path):
    run = tmp_path / "ray"
    summary = pipeline.build(load_recipe(DEMO, overrides(inputs)), run, executor="ray", ray_num_cpus=2)
    assert summary["records"] == 9 and summary["kept"] > 0
    assert summary["stages"]["ingest"]["items"] == 9 and summary["stages"]["classify"]["items"] == 7  # 1 copy, 1 bad
    assert_same_run(local_run, run)
    data = sorted(p.relative_to(run).as_posix() for p in (run / "dataset" / "data").iterdir())
    assert data and data == sorted(p.relative_to(local_run).as_posix() for p in (local_run / "dataset" / "data").iterdir())
    for name in data:
        assert_same_tables(pq.read_table(run / name), pq.read_table(local_run / name), name)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_run_killed_under_ray_resumes_under_the_local_executor(inputs, local_run, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "emocurate.cli", "build", "--recipe", str(DEMO), "--out", str(run), "--no-publish",
           "--executor", "ray", *overrides(inputs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run / "shards" / "classify" / "00000.done"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray runtime it started (same session)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()[-2000:]
    assert not (run / "records.parquet").exists()  # killed midway
    stamp = first.stat().st_mtime_ns
    pipeline.build(load_recipe(DEMO, overrides(inputs)), run, publish=False)
    assert first.stat().st_mtime_ns == stamp  # Ray's finished shard was not redone
    assert_same_run(local_run, run)


def test_cli_checks_the_executor_options_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from emocurate.cli import app

    base = ["build", "--recipe", str(DEMO), "--out", str(tmp_path / "run")]
    for extra, message in ((["--executor", "dask"], "--executor must be one of local, ray"),
                           (["--ray-address", "auto"], "--ray-address and --ray-allow-network need --executor ray")):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 2 and message in " ".join((result.output + result.stderr).split())
    assert not (tmp_path / "run").exists()
