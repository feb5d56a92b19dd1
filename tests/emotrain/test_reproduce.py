"""`emotrain reproduce` end to end on tiny models: Table 1 and Table 2, every row with intervals, and a killed
reproduction that resumes without redoing finished rows."""

import json
import logging

import pytest

from tests.emotrain.conftest import TINY_OVERRIDES

# Every trained row on tiny models; recipe sections a baseline lacks (conditioning) apply to CoEmoGen rows only.
TRAIN = [*TINY_OVERRIDES, "data.emotions=null", "data.num_workers=0", "run.mixed_precision='no'",
         "run.gradient_checkpointing=false", "run.cpu_threads=1", "run.keep_checkpoints=1"]


@pytest.fixture(scope="module")
def two_emotions(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("ds") / "two", emotions=["amusement", "fear"], n=8)


def eval_args(weights, tmp_path):
    return ["metrics=[fid, lpips, sem_d]", f"fid.inception={weights['inception']}", "fid.batch_size=8",
            f"fid.cache_dir={tmp_path / 'stats'}", f"lpips.alexnet={weights['alexnet']}", "lpips.pairs=3",
            "sem_d.pairs=3", "clip.model=tiny:clip", "intervals.resamples=200", "intervals.fid_resamples=10",
            "emogen.pairs=2", "report.paper_reference=false", "report.grid_images=2"]


def plan_and_settings(table, dataset, out, weights, tmp_path, **kw):
    from emocurate.core.config import load
    from emotrain.eval.config import EvalConfig
    from emotrain.eval.generate import GenerateSettings
    from emotrain.reproduce import Plan

    cfg = load(EvalConfig, None, ["device=cpu", *eval_args(weights, tmp_path)])
    plan = Plan(table=table, dataset=dataset, out=out, steps=kw.pop("steps", 1), overrides=TRAIN, **kw)
    return plan, cfg, GenerateSettings(n=3, steps=2, batch_size=3, device="cpu")


@pytest.mark.slow
def test_table_1_end_to_end_from_the_command_line(two_emotions, weights, tmp_path):
    from typer.testing import CliRunner

    from emotrain.cli import app

    out = tmp_path / "table1"
    args = ["reproduce", "--table", "1", "--dataset", two_emotions, "--out", str(out), "--steps", "1", "-n", "3",
            "--inference-steps", "2", "--gen-batch-size", "3", "--device", "cpu",
            *[a for o in TRAIN for a in ("--set", o)], *eval_args(weights, tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    merged = json.loads((out / "results.json").read_text())
    labels = ["Stable Diffusion", "Textual Inversion", "DreamBooth", "CoEmoGen (Ours)", "w/o L_SEM",
              "w/o emotion-specific LoRAs", "w/o polarity-shared LoRAs"]
    assert list(merged["models"]) == labels
    report = (out / "report.md").read_text()
    for label in labels:
        entry = merged["models"][label]
        assert entry["images"] == {"amusement": 3, "fear": 3}
        assert set(entry["intervals"]) >= {"fid", "lpips", "sem_d", "lpips_emogen", "sem_d_emogen"}
        assert f"| **{label}** | " in report and f"*{label} (reported in the paper)*" in report
        assert merged["rows"][label]["times"]["generate"] > 0
    assert merged["rows"]["Stable Diffusion"]["times"].get("train") is None  # nothing to train
    for key in ("textual-inversion", "dreambooth", "coemogen", "wo-lsem"):
        assert json.loads((out / "runs" / key / "config.json").read_text())["steps"] == 1
    assert "These numbers are noise**: every row was made with tiny" in report and "## Which differences are significant" in report
    assert "## EmoGen's metric protocol, beside ours" in report and "--images EmoGen=DIR" in report
    assert "[" in report.split("| **CoEmoGen (Ours)** |")[1].split("\n")[0]  # value [low, high]


@pytest.mark.slow
def test_table_2_runs_every_row_it_has_data_for(two_emotions, weights, tmp_path):
    from emotrain.reproduce import reproduce

    plan, cfg, gen = plan_and_settings(2, two_emotions, tmp_path / "t2", weights, tmp_path,
                                       caption_datasets={"plain-one-sentence": two_emotions})
    merged = reproduce(plan, cfg, gen)
    keys = [m["key"] for m in merged["rows"].values()]
    assert keys == ["coemogen", "captions-plain-one-sentence", "input-learnable", "input-text", "lsem-mae", "lsem-mse",
                    "lsem-kl"]
    assert all("sem_d" in m["intervals"] and "fid" in m["intervals"] for m in merged["models"].values())
    assert sorted(merged["skipped"]) == ["captions-emotion-detailed", "captions-plain-detailed"]
    report = (tmp_path / "t2" / "report.md").read_text()
    assert "## Rows not run" in report and "emoset-captions-plain-detailed.yaml" in report
    assert json.loads((tmp_path / "t2" / "runs" / "input-text" / "config.json").read_text())["recipe"]["emotion_input"] == "text"
    assert json.loads((tmp_path / "t2" / "runs" / "lsem-kl" / "config.json").read_text())["recipe"]["loss"]["semantic_type"] == "kl"


def test_a_killed_reproduction_resumes_without_redoing_finished_rows(two_emotions, weights, tmp_path, caplog):
    from emotrain.reproduce import reproduce

    plan, cfg, gen = plan_and_settings(1, two_emotions, tmp_path / "t1", weights, tmp_path,
                                       rows=["coemogen", "wo-lsem"], steps=3)
    seen = []

    def killer(task, advance=0, total=None):
        seen.append(task)
        if task == "wo-lsem · train" and advance and seen.count(task) >= 3:  # the second row, during step 2 (step 1 is checkpointed)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce(plan, cfg, gen, progress=killer)
    first = tmp_path / "t1" / "rows" / "coemogen" / "eval" / "results.json"
    stamp = first.stat().st_mtime_ns
    images = sorted((tmp_path / "t1" / "rows" / "coemogen" / "images").rglob("*.png"))
    image_stamps = [p.stat().st_mtime_ns for p in images]
    assert len(images) >= 6
    assert not (tmp_path / "t1" / "runs" / "wo-lsem" / "config.json").exists()
    assert (tmp_path / "t1" / "runs" / "wo-lsem" / "checkpoints" / "checkpoint-1").is_dir()

    tasks = []
    with caplog.at_level(logging.INFO, logger="emotrain.train"):
        merged = reproduce(plan, cfg, gen, progress=lambda task, advance=0, total=None: tasks.append(task))
    assert first.stat().st_mtime_ns == stamp  # the finished row was not redone ...
    assert [p.stat().st_mtime_ns for p in images] == image_stamps
    assert not any(t.startswith("coemogen") for t in tasks)  # ... nor trained, generated or evaluated again
    assert any("resumed from" in r.getMessage() and "checkpoint-1" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "t1" / "runs" / "wo-lsem" / "config.json").read_text())["steps"] == 3
    assert list(merged["models"]) == ["CoEmoGen (Ours)", "w/o L_SEM"]
    assert "| **w/o L_SEM** |" in (tmp_path / "t1" / "report.md").read_text()


def test_plan_errors_are_clear(two_emotions, weights, tmp_path):
    from emotrain.reproduce import Plan, reproduce

    with pytest.raises(ValueError, match="the paper has tables 1, 2"):
        Plan(table=3, dataset=two_emotions, out=tmp_path)
    with pytest.raises(ValueError, match=r"--rows \['emogen'\] not in Table 1"):
        Plan(table=1, dataset=two_emotions, out=tmp_path, rows=["emogen"])
    plan, cfg, gen = plan_and_settings(2, two_emotions, tmp_path / "x", weights, tmp_path, rows=["captions-plain-detailed"])
    with pytest.raises(ValueError, match="--caption-dataset plain-detailed=DIR"):
        reproduce(plan, cfg, gen)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_sigkill_mid_row_then_rerun_continues(two_emotions, weights, tmp_path):
    """`kill -9` of `emotrain reproduce` while its second row trains: the rerun keeps the first row and resumes the
    second from its last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.paths import REPO

    out = tmp_path / "t1"
    cmd = [sys.executable, "-m", "emotrain", "reproduce", "--table", "1", "--rows", "coemogen,wo-lsem", "--dataset",
           two_emotions, "--out", str(out), "--steps", "40", "-n", "3", "--inference-steps", "2", "--gen-batch-size", "3",
           "--device", "cpu", *[a for o in TRAIN for a in ("--set", o)], *eval_args(weights, tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = out / "runs" / "wo-lsem" / "checkpoints"
    deadline = time.monotonic() + 400
    while not (checkpoints.is_dir() and any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir())):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the second row never checkpointed"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = out / "rows" / "coemogen" / "eval" / "results.json"
    stamp = first.stat().st_mtime_ns
    assert not (out / "runs" / "wo-lsem" / "config.json").exists()

    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr
    assert first.stat().st_mtime_ns == stamp  # the finished row was kept as it was
    said = " ".join((again.stdout + again.stderr).split())
    assert "resumed from" in said and "wo-lsem/checkpoints/checkpoint-" in said  # the killed training continued
    assert json.loads((out / "runs" / "wo-lsem" / "config.json").read_text())["steps"] == 40
    merged = json.loads((out / "results.json").read_text())
    assert list(merged["models"]) == ["CoEmoGen (Ours)", "w/o L_SEM"]
