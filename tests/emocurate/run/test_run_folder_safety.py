"""A run folder never destroys user files or publishes stale or empty data (issue 11, items 1-5)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from emocurate.core.config import ConfigError
from emocurate.recipe import load_recipe
from emocurate.run import driver
from emocurate.run.folder import RunFolderError
from emocurate.run.lock import LOCK, RunLocked, locked
from emocurate.run.publish import PUBLISHED, push_run
from emocurate.publish.dataset import PublishError
from tests.helpers.images import mixed_input_overrides
from tests.helpers.paths import REPO

DEMO = REPO / "recipes" / "curate" / "demo.yaml"


overrides = mixed_input_overrides



@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    run = tmp_path_factory.mktemp("safety") / "run"
    summary = driver.build(load_recipe(DEMO, overrides(inputs)), run)
    assert summary["kept"] > 0
    return run


def _copy(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to))


def test_a_folder_that_is_not_a_run_folder_is_refused_untouched(inputs, tmp_path):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    files = {out / "recipe.yaml": b"my own file", out / ".notes.txt.swp.tmp": b"editor swap",
             out / "sub" / ".draft.tmp": b"another"}
    for path, data in files.items():
        path.write_bytes(data)
    with pytest.raises(RunFolderError, match="not an emocurate run folder"):
        driver.build(load_recipe(DEMO, overrides(inputs)), out)
    assert {p: p.read_bytes() for p in files} == files and not (out / "run.json").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([".notes.txt.swp.tmp", "recipe.yaml", "sub"])
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        driver.build(load_recipe(DEMO, overrides(inputs)), a_file)


def test_a_second_build_is_refused_while_the_first_holds_the_lock(built, inputs, tmp_path):
    run = _copy(built, tmp_path / "run")
    other_tmp = run / ".records.parquet.4242.tmp"  # the first build's file being written
    with locked(run):
        other_tmp.write_bytes(b"half written")
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            driver.build(load_recipe(DEMO, overrides(inputs)), run)
        with pytest.raises(RunLocked, match="in use by another emocurate process"):
            driver.refilter(run, [])
        assert other_tmp.exists()  # the refused commands deleted nothing
    driver.build(load_recipe(DEMO, overrides(inputs)), run)  # once the first one is done
    assert not other_tmp.exists()  # now a leftover of a process that is gone: the next build cleans it up


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time\nfrom pathlib import Path\nfrom emocurate.run.lock import locked\n"
            "with locked(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            with locked(run):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with locked(run):  # the dead holder's lock is gone with it
        assert (run / LOCK).exists()


def test_zero_kept_writes_no_dataset_and_removes_a_stale_one(built, tmp_path):
    run = _copy(built, tmp_path / "run")
    assert (run / "dataset" / "README.md").exists() and (run / PUBLISHED).exists()
    none_kept = ["classify.min_confidence=1.0", "apply_min_confidence_to_labelled=true"]
    summary = driver.refilter(run, none_kept)
    assert summary["kept"] == 0 and summary["dataset"] is None
    assert summary["dataset_not_written"].startswith("no kept records")
    assert not (run / "dataset").exists() and not (run / PUBLISHED).exists()
    with pytest.raises(FileNotFoundError, match="no dataset"):
        push_run(run, "user/name")
    # a build whose thresholds keep nothing ends cleanly too (no Arrow error)
    fresh = tmp_path / "fresh"
    summary = driver.build(load_recipe(run / "recipe.yaml"), fresh)
    assert summary["kept"] == 0 and summary["dataset"] is None and not (fresh / "dataset").exists()


def test_push_refuses_a_dataset_written_from_other_records(built, tmp_path):
    run = _copy(built, tmp_path / "run")
    driver.refilter(run, ["classify.min_confidence=0.0", "clip_filter.drop_fraction=0.0"], publish=False)
    assert pq.read_table(run / "records.parquet").to_pylist() != pq.read_table(built / "records.parquet").to_pylist()
    with pytest.raises(PublishError, match="not written from the current"):
        push_run(run, "user/name")
    driver.refilter(run, [])  # republished from the current records: push would go ahead (it fails later, offline)
    from emocurate.run.publish import check_current

    check_current(run)


def test_a_truncated_or_empty_shard_is_redone_with_a_warning(built, inputs, tmp_path):
    run = _copy(built, tmp_path / "run")
    reference = pq.read_table(built / "records.parquet").to_pylist()
    classify0 = run / "shards" / "classify" / "00000.parquet"
    classify0.write_bytes(classify0.read_bytes()[: classify0.stat().st_size // 2])
    caption = sorted((run / "shards" / "caption").glob("*.done"))[-1].with_suffix(".parquet")
    caption.write_bytes(b"")  # a copy gone wrong
    ingest2 = run / "shards" / "ingest" / "00002.parquet"
    ingest2.write_bytes(ingest2.read_bytes()[:100])
    from emocurate.run.status import run_status
    from emocurate.store.shards import DamagedShard

    (run / "records.parquet").unlink()
    with pytest.raises(DamagedShard, match="is damaged"):
        run_status(run)  # read-only: says what is wrong, repairs nothing
    summary = driver.build(load_recipe(DEMO, overrides(inputs)), run)
    assert len(summary["warnings"]) == 3 and all("damaged" in w for w in summary["warnings"])
    assert pq.read_table(run / "records.parquet").to_pylist() == reference


def test_a_mistyped_or_empty_source_does_not_pin_the_run_folder(inputs, tmp_path):
    run = tmp_path / "run"
    with pytest.raises((FileNotFoundError, ConfigError, ValueError)):
        driver.build(load_recipe(DEMO, overrides(tmp_path / "no-such-folder")), run)
    assert not run.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    run.mkdir()
    with pytest.raises(ValueError, match="gave no items"):
        driver.build(load_recipe(DEMO, overrides(empty)), run)
    assert sorted(p.name for p in run.iterdir()) == [LOCK]  # no run.json, recipe or _complete.json left behind
    summary = driver.build(load_recipe(DEMO, overrides(inputs)), run, publish=False)  # the corrected command runs
    assert summary["records"] == 9


def test_emotrain_fit_with_a_wrong_dataset_leaves_no_run_folder(tmp_path):
    from emotrain.data import DatasetError
    from emotrain.recipe import load_recipe as load_train_recipe
    from emotrain.train import train

    out = tmp_path / "train-run"
    with pytest.raises(DatasetError, match="no-such-dataset. is neither an existing folder nor a Hub id"):
        train(load_train_recipe(REPO / "recipes" / "train" / "demo.yaml"), str(tmp_path / "no-such-dataset"), out,
              max_steps=1)
    assert not out.exists()
