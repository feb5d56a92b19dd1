"""End to end with the real tiny models (tiny:clip, tiny:captioner): build, bad inputs, refilter, retry, kill -9 resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("emocurate.caption")  # TEMPORARY: until curate-models is merged into main

from emocurate import pipeline  # noqa: E402
from emocurate.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"
COMPARE = ["id", "source_id", "status", "dropped_by", "reason", "emotion", "caption", "clip_score"]


def _overrides(folder, *extra):
    return [f"sources=[folder:{folder}]", "shard_size=4", "caption.batch_size=4", "classify.batch_size=4",
            "clip_filter.batch_size=4", "classify.min_confidence=0.0", *extra]


def _records(run):
    return pq.read_table(run / "records.parquet").select(COMPARE).to_pylist()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One uninterrupted library build over the test folder, shared by the tests that only read it."""
    from tests.emocurate.conftest import bad_files, jpeg, odd_modes

    root = tmp_path_factory.mktemp("inputs")
    files = {"amusement/a1.jpg": jpeg(1), "amusement/a2.jpg": jpeg(2), "fear/f1.jpg": jpeg(3), "misc/copy.jpg": jpeg(1),
             **{f"misc/x{i}.jpg": jpeg(10 + i) for i in range(8)},
             **{f"odd/{k}": v for k, v in odd_modes().items()}, **{f"bad/{k}": v for k, v in bad_files().items()}}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    run = tmp_path_factory.mktemp("run") / "uninterrupted"
    summary = pipeline.build(load_recipe(DEMO, _overrides(root)), run)
    return root, run, summary, len(files)


def test_every_input_is_one_record(built):
    root, run, summary, n_files = built
    records = pq.read_table(run / "records.parquet").to_pylist()
    assert summary["records"] == len(records) == n_files
    assert sorted(r["source_id"] for r in records) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    by_id = {r["source_id"]: r for r in records}
    for name in ("empty.jpg", "text_named.jpg", "truncated.jpg", "bomb.png", "huge_side.png", "corrupt.png"):
        assert by_id[f"bad/{name}"]["dropped_by"] == "ingest" and by_id[f"bad/{name}"]["reason"]
    for name in ("cmyk.jpg", "alpha.png", "gray16.png", "palette.png", "palette_transparent.gif"):
        assert by_id[f"odd/{name}"]["caption"], name  # normalised to RGB and processed
    assert by_id["misc/copy.jpg"]["dropped_by"] == "dedup"
    assert by_id["amusement/a1.jpg"]["emotion"] == "amusement" and by_id["fear/f1.jpg"]["emotion"] == "fear"
    kept = [r for r in records if r["status"] == "kept"]
    assert kept and all(r["caption"] and r["clip_score"] is not None for r in kept)
    assert summary["kept"] == len(kept)


def test_refilter_runs_no_model_and_follows_thresholds(built, tmp_path, monkeypatch):
    import shutil

    from emocurate import caption, classify, clipscore

    _, run, _, _ = built
    run = Path(shutil.copytree(run, tmp_path / "run"))
    before = pq.read_table(run / "records.parquet").to_pylist()

    def no_model(*a, **k):
        raise AssertionError("refilter loaded a model")

    for module, name in ((classify, "load_classifier"), (caption, "load_captioner"), (clipscore, "load_scorer")):
        monkeypatch.setattr(module, name, no_model)
    pipeline.refilter(run, ["classify.min_confidence=0.3", "clip_filter.drop_fraction=0.5"], publish=False)
    after = pq.read_table(run / "records.parquet").to_pylist()
    assert [r["emotion_probs"] for r in after] == [r["emotion_probs"] for r in before]
    for b, a in zip(before, after):
        if b["status"] == "kept" and b["label"] is None and b["emotion_confidence"] < 0.3:
            assert a["dropped_by"] == "classify"
    kept = [a for a in after if a["status"] == "kept"]
    scored = [a for a in after if a["clip_score"] is not None and a["dropped_by"] in (None, "clip_filter")]
    assert len(kept) <= len(scored) - len(scored) // 2
    assert load_recipe(run / "recipe.yaml").classify.min_confidence == 0.3


def _cli(*args, env=None):
    return [sys.executable, "-m", "emocurate", *args]


def test_kill9_and_resume_equals_uninterrupted(built, tmp_path):
    root, reference, _, _ = built
    run = tmp_path / "killed"
    cmd = _cli("build", "--recipe", str(DEMO), "--out", str(run), *_overrides(root))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = run / "shards" / "caption" / "00000.done"
    deadline = time.time() + 90
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (run / "records.parquet").exists()  # killed midway
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _records(run) == _records(reference)
