"""End to end with the real tiny models (tiny:clip, tiny:captioner): build, bad inputs, refilter, retry, kill -9 resume."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from emocurate.run import driver as pipeline
from emocurate.run.decide import NOT_CAPTIONED
from emocurate.recipe import load_recipe
from emocurate.run.status import run_status
from tests.helpers.images import bad_files, jpeg, odd_modes
from tests.helpers.paths import REPO

ROOT = REPO
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"
COMPARE = ["id", "source_id", "status", "dropped_by", "reason", "emotion", "emotion_confidence", "caption", "clip_score"]


def _overrides(folder, *extra):
    return [f"sources=[folder:{folder}]", "shard_size=4", "caption.batch_size=4", "caption.max_new_tokens=8",
            "classify.batch_size=4", "clip_filter.batch_size=4", *extra]


def _records(run, columns=COMPARE):
    return pq.read_table(run / "records.parquet").select(columns).to_pylist()


def _write(root, files):
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One uninterrupted library build over a folder with labels, a duplicate, odd modes and bad files."""
    files = {"amusement/a1.jpg": jpeg(1), "fear/f1.jpg": jpeg(3), "misc/copy.jpg": jpeg(1),
             **{f"misc/x{i}.jpg": jpeg(10 + i) for i in range(4)},
             **{f"odd/{k}": v for k, v in odd_modes().items()}, **{f"bad/{k}": v for k, v in bad_files().items()}}
    root = _write(tmp_path_factory.mktemp("inputs"), files)
    run = tmp_path_factory.mktemp("run") / "uninterrupted"
    summary = pipeline.build(load_recipe(DEMO, _overrides(root)), run)
    return root, run, summary, len(files)


def test_every_input_is_one_record(built):
    root, run, summary, n_files = built
    records = pq.read_table(run / "records.parquet").to_pylist()
    assert summary["records"] == len(records) == n_files
    assert sorted(r["source_id"] for r in records) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    by_id = {r["source_id"]: r for r in records}
    for name in bad_files():
        assert by_id[f"bad/{name}"]["dropped_by"] == "ingest" and by_id[f"bad/{name}"]["reason"], name
    for name in odd_modes():  # normalised to RGB and processed (classified; captioned unless below min_confidence)
        assert by_id[f"odd/{name}"]["emotion_probs"] is not None and by_id[f"odd/{name}"]["dropped_by"] != "ingest", name
    assert by_id["misc/copy.jpg"]["dropped_by"] == "dedup"
    assert by_id["amusement/a1.jpg"]["emotion"] == "amusement" and by_id["fear/f1.jpg"]["emotion"] == "fear"
    assert by_id["fear/f1.jpg"]["status"] == "kept" or by_id["fear/f1.jpg"]["dropped_by"] == "clip_filter"  # label trusted
    kept = [r for r in records if r["status"] == "kept"]
    assert kept and all(r["caption"] and r["clip_score"] is not None for r in kept)
    assert summary["kept"] == len(kept)


def test_the_dataset_loads(built):
    from datasets import load_dataset

    _, run, summary, _ = built
    ds = load_dataset(str(run / "dataset"), split="train")
    kept = [r for r in _records(run) if r["status"] == "kept"]
    assert sorted(ds["sha256"]) == sorted(r["id"] for r in kept) and summary["dataset"] == str(run / "dataset")


def test_refilter_runs_no_model_then_build_captions_the_newly_eligible(built, tmp_path, monkeypatch):
    from emocurate.stages import caption
    from emocurate.stages import classify
    from emocurate.stages import clip_filter as clipscore

    _, source_run, _, _ = built
    run = Path(shutil.copytree(source_run, tmp_path / "run"))
    before = pq.read_table(run / "records.parquet").to_pylist()
    low = [r["source_id"] for r in before if r["reason"] and r["reason"].startswith("low_confidence")]
    assert low, "the fixture should have items below the demo's min_confidence"
    loaders = {module: getattr(module, name) for module, name in
               ((classify, "load_classifier"), (caption, "load_captioner"), (clipscore, "load_scorer"))}

    def no_model(*a, **k):
        raise AssertionError("refilter loaded a model")

    for module in loaders:
        monkeypatch.setattr(module, {classify: "load_classifier", caption: "load_captioner", clipscore: "load_scorer"}[module], no_model)
    emotions = "emotions=[amusement, awe, contentment, excitement, anger, disgust, sadness]"  # fear left out
    pipeline.refilter(run, ["classify.min_confidence=0.0", "clip_filter.drop_fraction=0.5", emotions], publish=False)
    after = pq.read_table(run / "records.parquet").to_pylist()
    fear = next(r for r in after if r["source_id"] == "fear/f1.jpg")
    assert fear["dropped_by"] == "classify" and fear["reason"] == "emotion_not_kept: fear (label)"
    assert [r["emotion_probs"] for r in after] == [r["emotion_probs"] for r in before]  # scores untouched
    assert {r["source_id"] for r in after if r["reason"] == NOT_CAPTIONED} == set(low)
    scored = [r for r in after if r["clip_score"] is not None and r["dropped_by"] in (None, "clip_filter")]
    assert sum(r["status"] == "kept" for r in after) == len(scored) - sum(
        len([s for s in scored if s["emotion"] == e]) // 2 for e in {s["emotion"] for s in scored})
    monkeypatch.undo()
    classified = {p: p.stat().st_mtime_ns for p in (run / "shards" / "classify").glob("*.parquet")}
    summary = pipeline.build(load_recipe(run / "recipe.yaml"), run, publish=False)
    assert {p: p.stat().st_mtime_ns for p in (run / "shards" / "classify").glob("*.parquet")} == classified
    final = {r["source_id"]: r for r in _records(run)}
    assert not any(r["reason"] == NOT_CAPTIONED for r in final.values()) and summary["records"] == len(before)
    assert all(final[s]["caption"] for s in low)
    for r in before:  # captions made earlier are reused, not redone
        if r["caption"] and final[r["source_id"]]["caption"]:
            assert final[r["source_id"]]["caption"] == r["caption"]


def test_caption_failure_is_recorded_and_retried(built, tmp_path, monkeypatch):
    from emocurate.stages import caption

    root, reference, _, _ = built
    real = caption.load_captioner
    calls = []

    def flaky_loader(cfg):
        model = real(cfg)
        inner = model.caption

        def caption_once_failing(images, emotions):
            calls.append(len(images))
            if len(calls) == 1:
                raise ConnectionError("endpoint went away")
            return inner(images, emotions)

        model.caption = caption_once_failing
        return model

    monkeypatch.setattr(caption, "load_captioner", flaky_loader)
    run = tmp_path / "run"
    recipe = load_recipe(DEMO, _overrides(root))
    pipeline.build(recipe, run, publish=False)
    failed = [r for r in _records(run, COMPARE) if r["reason"] and r["reason"].startswith("caption_error")]
    assert len(failed) == calls[0] and "ConnectionError: endpoint went away" in failed[0]["reason"]
    pipeline.build(recipe, run, publish=False)  # the next build retries them
    assert _records(run) == _records(reference)


def _run_until(cmd, env, marker: Path):
    """Start the CLI and SIGKILL it as soon as `marker` exists."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert marker.exists()


def test_kill9_and_resume_equals_uninterrupted(built, tmp_path):
    root, reference, _, _ = built
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "emocurate", "build", "--recipe", str(DEMO), "--out", str(run), "--no-publish",
           *_overrides(root)]
    import torch

    # the same intra-op thread count as the in-process reference build: float reductions (and so the tiny captioner's
    # greedy tokens) depend on it, and another test may have changed this process's count
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    _run_until(cmd, env, run / "shards" / "ingest" / "00001.done")  # killed during ingest (or just after)
    _run_until(cmd, env, run / "shards" / "caption" / "00000.done")  # resumed, then killed during captioning
    assert not (run / "records.parquet").exists()  # it never got to the end
    live = run_status(run)  # status works on an interrupted run: decided from the finished shards
    assert live["live"] and live["records"] == len(_records(reference))
    assert live["status"].get("pending") and live["pending_at_stage"]  # e.g. waiting for caption: pending, not dropped
    assert not any(r["reason"].endswith("_yet") for r in live["reasons"])
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _records(run) == _records(reference)


def test_cli_push_uploads_the_run_dataset_to_a_loopback_hub(built, tmp_path):
    from tests.helpers.fakehub import FakeHub

    _, run, _, _ = built
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT))
    with FakeHub() as hub:
        env.update(hub.env("hf_test_token_123"))
        done = subprocess.run([sys.executable, "-m", "emocurate", "push", str(run), "--repo", "user/demo-test", "--private"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        uploaded = hub.files("user/demo-test")
        assert hub.repos[("dataset", "user/demo-test")].private and not hub.errors
    local = {p.relative_to(run / "dataset").as_posix(): p.read_bytes() for p in (run / "dataset").rglob("*") if p.is_file()}
    assert uploaded == local and done.stdout.strip().endswith("/datasets/user/demo-test")
    assert "hf_test_token_123" not in done.stdout + done.stderr


def test_urls_source_end_to_end_records_fetch_failures(tmp_path):
    from emocurate.crawl.fetch import CrawlConfig
    from tests.helpers.crawl_server import Body, CrawlServer

    routes = {f"/{i}.jpg": Body(jpeg(60 + i), "image/jpeg") for i in range(3)}
    with CrawlServer(routes) as srv:
        listing = tmp_path / "list.txt"
        listing.write_text("\n".join([srv.url("/0.jpg"), srv.url("/missing.jpg"), srv.url("/1.jpg"), srv.url("/2.jpg")]))
        recipe = load_recipe(DEMO, [f"sources=[urls:{listing}]", "shard_size=2", "caption.max_new_tokens=8"])
        summary = pipeline.build(recipe, tmp_path / "run", crawl_cfg=CrawlConfig(allow_hosts=["127.0.0.1"], retries=0),
                                 publish=False)
    records = pq.read_table(tmp_path / "run" / "records.parquet").to_pylist()
    assert [r["source_id"] for r in records] == [srv.url(p) for p in ("/0.jpg", "/missing.jpg", "/1.jpg", "/2.jpg")]
    missing = records[1]
    assert missing["dropped_by"] == "fetch" and missing["reason"].startswith("http_error") and missing["id"].startswith("nodata-")
    assert all(r["emotion_probs"] is not None for r in records if r is not missing) and summary["records"] == 4
    assert (tmp_path / "run" / "crawl").is_dir()  # the crawler keeps its resume state in the run folder


def test_a_run_folder_of_the_old_layout_resumes_without_redoing_anything(built, tmp_path):
    """Before the restructure the CLIP filter's shards lived in shards/clipscore/: such a run resumes as it is."""
    root, reference, _, _ = built
    run = Path(shutil.copytree(reference, tmp_path / "old"))
    (run / "shards" / "clip_filter").rename(run / "shards" / "clipscore")
    (run / "records.parquet").unlink()
    shutil.rmtree(run / "dataset")
    stamps = {p: p.stat().st_mtime_ns for p in (run / "shards").rglob("*.done")}
    summary = pipeline.build(load_recipe(DEMO, _overrides(root)), run)
    assert all(summary["stages"][s]["items"] == 0 for s in ("classify", "caption", "clip_filter"))
    assert {p: p.stat().st_mtime_ns for p in (run / "shards").rglob("*.done")} == stamps  # nothing rewritten
    assert not (run / "shards" / "clip_filter").exists()
    assert _records(run) == _records(reference)
    assert run_status(run)["status"] == run_status(reference)["status"]
