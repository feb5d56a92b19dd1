"""emotrain under `accelerate launch` with two CPU processes (gloo on loopback) against one process, same global batch.

`accelerate launch --cpu --num_processes 2` silently runs ONE process; `--multi_gpu` with ACCELERATE_USE_CPU=true runs
two. The checkpoint's state.json records how many ranks wrote it, and each rank leaves its own RNG file.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from emotrain.train import train
from tests.helpers.paths import REPO

ROOT = REPO
STEPS = ["optim.max_steps=4", "run.checkpoint_every=2", "run.keep_checkpoints=3", "run.report_to=tensorboard",
         "run.log_every=1"]
TINY = ["model.pretrained=tiny:sd", "model.clip=tiny:clip", "data.resolution=32", "conditioning.mapper_hidden=16",
        "conditioning.d0=24", "run.validate_every=0", "run.samples_per_emotion=0", "run.inference_steps=2", *STEPS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(dataset: str, out: Path, *args: str) -> None:
    """`accelerate launch` two CPU ranks of `emotrain fit`, on loopback only."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(free_port()), "-m", "emotrain.cli", "fit", "--dataset", dataset, "--out", str(out),
           *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def logged_losses(run: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses = {}
    for path in sorted((run / "logs").rglob("events.out.tfevents*")):
        events = EventAccumulator(str(path))
        events.Reload()
        if "loss" in events.Tags()["scalars"]:
            losses.update({e.step: e.value for e in events.Scalars("loss")})
    return losses


@pytest.mark.slow
def test_two_processes_checkpoint_once_resume_and_match_one_process(tmp_path, tiny_dataset):
    from emotrain.recipe import load_recipe

    single = train(load_recipe(None, [*TINY, "optim.batch_size=2"]), tiny_dataset, tmp_path / "one")
    run = tmp_path / "two"
    launch(tiny_dataset, run, "--max-steps", "2", *TINY, "optim.batch_size=1")
    first = json.loads((run / "checkpoints" / "checkpoint-2" / "state.json").read_text())
    # two ranks really ran: 2 steps x 2 ranks x 1 sample
    assert {k: first[k] for k in ("step", "position", "num_processes")} == {"step": 2, "position": 4, "num_processes": 2}
    launch(tiny_dataset, run, "--resume", "latest", *TINY, "optim.batch_size=1")

    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    final = run / "checkpoints" / "checkpoint-4"
    state = json.loads((final / "state.json").read_text())
    assert {k: state[k] for k in ("step", "position", "num_processes")} == {"step": 4, "position": 8, "num_processes": 2}
    # written once by rank 0, plus one RNG state per rank; nothing half-written left over
    assert sorted(p.name for p in final.iterdir()) == [
        "encoder.safetensors", "hilora.safetensors", "mapper.safetensors", "optimizer.pt", "rng_0.pt", "rng_1.pt",
        "state.json"]
    assert json.loads((run / "config.json").read_text())["steps"] == 4
    assert (run / "hilora.safetensors").is_file() and not list(run.glob(".*tmp*"))

    # same global batch (2 x 1 vs 1 x 2): the loss agrees within the noise of different per-rank noise draws
    one, two = logged_losses(single), logged_losses(run)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    mean_one, mean_two = sum(one.values()) / 4, sum(two.values()) / 4
    assert abs(mean_two - mean_one) <= 0.1 * mean_one, (one, two)
