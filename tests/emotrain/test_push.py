"""`emotrain push` against the loopback fake Hub: every run file but checkpoints arrives; the token is never printed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emotrain.push import push_run
from tests.helpers.paths import REPO

ROOT = REPO
TOKEN = "hf_emotrain_test_token_123"


def test_push_uploads_the_run(trained_run, tmp_path):
    from tests.helpers.fakehub import FakeHub

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT))
    with FakeHub() as hub:
        env.update(hub.env(TOKEN))
        proc = subprocess.run([sys.executable, "-m", "emotrain", "push", str(trained_run), "--repo", "user/coemogen-test",
                               "--private"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = hub.files("user/coemogen-test", "model")
        assert hub.repos[("model", "user/coemogen-test")].private and not hub.errors
    local = {p.relative_to(trained_run).as_posix() for p in trained_run.rglob("*")
             if p.is_file() and not p.relative_to(trained_run).as_posix().startswith("checkpoints/")}
    assert set(files) == local and "hilora.safetensors" in files and "samples/awe.png" in files
    assert files["config.json"] == (trained_run / "config.json").read_bytes()
    assert TOKEN not in proc.stdout + proc.stderr and "user/coemogen-test" in proc.stdout


def test_push_refuses_unfinished_runs_and_missing_tokens(tmp_path, trained_run, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(FileNotFoundError, match="not a finished emotrain run"):
        push_run(tmp_path, "user/x")
    with pytest.raises(ValueError, match="user/name"):
        push_run(trained_run, "nope")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ValueError, match="hf auth login"):
        push_run(trained_run, "user/x")


def test_push_to_an_unreachable_hub_is_one_error_line(trained_run, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "EMOCURATE_DEBUG")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT), HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN=TOKEN,
               HF_HUB_DISABLE_XET="1")
    proc = subprocess.run([sys.executable, "-m", "emotrain", "push", str(trained_run), "--repo", "user/x"], env=env,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot connect"), proc.stderr[-2000:]
    assert TOKEN not in proc.stdout + proc.stderr
