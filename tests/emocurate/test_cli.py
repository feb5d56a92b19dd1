import json
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from emocurate.cli import app
from tests.helpers.paths import REPO

ROOT = REPO
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"


def test_bad_recipe_value_fails_before_any_work(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["build", "--recipe", str(DEMO), "--out", str(out), "classify.min_confidence=2"])
    assert result.exit_code == 2 and "min_confidence must be in [0, 1]" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["build", "--recipe", str(DEMO), "--out", str(out), "--source", "ftp:x"])
    assert result.exit_code == 2 and "unknown source 'ftp:x'" in result.output and not out.exists()


def test_refilter_refuses_model_keys(tmp_path):
    result = CliRunner().invoke(app, ["refilter", str(tmp_path), "--set", "caption.model=other"])
    assert result.exit_code == 2 and "refilter cannot change 'caption.model'" in result.output


def test_help_is_instant():
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import sys; from emocurate.cli import app; "
                           "print(any(m in sys.modules for m in ('torch', 'transformers', 'datasets', 'pyarrow')))"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
    assert time.perf_counter() - start < 10


def test_train_classifier_on_an_emoset_layout_then_use_the_probe(tmp_path):
    import json

    from emocurate.stages.classify import ClassifyConfig, load_classifier
    from tests.helpers.images import photo
    from tests.helpers.emoset import make_emoset

    root = make_emoset(tmp_path / "EmoSet-118K", (9, 0, 0))
    result = CliRunner().invoke(app, ["train-classifier", "--dataset", f"emoset:{root}", "--out", str(tmp_path / "probe"),
                                      "--clip-model", "tiny:clip", "--epochs", "3", "--batch-size", "4",
                                      "--val-fraction", "0", "--emotions", "amusement,awe,sadness"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])  # the metrics
    cfg = ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe"))
    probs = load_classifier(cfg, ["amusement", "awe", "sadness"]).predict([photo(1)])
    assert probs.shape == (1, 3)


def test_build_urls_with_crawl_flags_records_status_counts_and_robots_note(tmp_path):
    from emocurate.crawl.state import runs
    from tests.helpers.crawl_server import Body, CrawlServer
    from tests.helpers.images import jpeg

    routes = {f"/img/{i}.jpg": Body(jpeg(70 + i), "image/jpeg") for i in range(3)}
    routes["/robots.txt"] = Body(b"User-agent: *\nDisallow: /img/\n", "text/plain")
    with CrawlServer(routes) as srv:
        listing = tmp_path / "list.txt"
        listing.write_text("\n".join([srv.url(f"/img/{i}.jpg") for i in range(3)] + [srv.url("/gone.jpg")]))
        out = tmp_path / "run"
        result = CliRunner().invoke(app, [
            "build", "--recipe", str(DEMO), "--out", str(out), "--source", f"urls:{listing}",
            "--allow-hosts", "127.0.0.1", "--ignore-robots", "classify.min_confidence=0", "clip_filter.drop_fraction=0",
            "caption.max_new_tokens=8", "crawl.retries=0",
        ])
    assert result.exit_code == 0, result.output
    assert "fetch status: ok 3, http_error 1" in result.output
    assert [r["ignore_robots"] for r in runs(out / "crawl")] == [True]
    card = (out / "dataset" / "README.md").read_text()
    assert "--ignore-robots was used" in card  # the robots.txt above disallows every image: ignoring it is recorded
    assert "http_error" in card and "robots_disallowed" not in card


def _error_line(result) -> str:
    """The whole output is one `error:` line (rich may soft-wrap nothing: soft_wrap is on), and no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip() and "Generating train split" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def unwritable_folder(tmp_path) -> Path:
    """A path whose folder cannot be created: under a read-only dir, or (root ignores modes) under /sys."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").mkdir()
    except PermissionError:
        return ro / "run"
    (ro / "probe").rmdir()
    try:
        Path("/sys/emocurate-probe").mkdir()
    except OSError:
        return Path("/sys/emocurate-run")
    Path("/sys/emocurate-probe").rmdir()
    import pytest

    pytest.skip("no unwritable folder on this machine")


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclassify: [a, b\n")
    result = CliRunner().invoke(app, ["build", "--recipe", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "bad.yaml: line 3, column 1: not valid YAML" in _error_line(result)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out in (afile, afile / "run"):
        result = CliRunner().invoke(app, ["build", "--recipe", str(DEMO), "--out", str(out), "--limit", "2"])
        assert result.exit_code == 2 and "is not a folder" in _error_line(result) and afile.read_text() == "keep me"
    result = CliRunner().invoke(app, ["build", "--recipe", str(DEMO), "--out", str(tmp_path / "run"), "--source",
                                      f"folder:{tmp_path / 'nope'}"])
    assert result.exit_code == 2 and result.output.startswith("error: ")  # no (empty) progress display before it
    assert "is not a directory" in _error_line(result)
    result = CliRunner().invoke(app, ["train-classifier", "--dataset", f"emoset:{tmp_path / 'nope'}", "--out",
                                      str(tmp_path / "probe"), "--clip-model", "tiny:clip"])
    assert result.exit_code == 2 and "expected the official EmoSet-118K layout" in _error_line(result)


def test_an_unwritable_out_is_one_line_and_exit_1(tmp_path):
    out = unwritable_folder(tmp_path)
    result = CliRunner().invoke(app, ["build", "--recipe", str(DEMO), "--out", str(out), "--limit", "2"])
    assert result.exit_code == 1 and "choose a location you can write to" in _error_line(result)


def test_push_to_an_unreachable_hub_is_one_line_and_debug_shows_the_traceback(tmp_path):
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from emocurate.recipe import CurateRecipe
    from emocurate.run.folder import save_recipe

    run = tmp_path / "run"
    (run / "dataset" / "data").mkdir(parents=True)  # a dataset folder shaped like a built one
    save_recipe(run, CurateRecipe(sources=["folder:/x"]))
    (run / "dataset" / "README.md").write_text("card")
    pq.write_table(pa.table({"caption": ["a calm lake"]}), run / "dataset" / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"status": ["kept"]}), run / "records.parquet")  # the records dataset/ was written from
    from emocurate.run.publish import PUBLISHED, records_sha256

    (run / PUBLISHED).write_text(json.dumps({"records_sha256": records_sha256(run)}))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "EMOCURATE_DEBUG")}
    env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_unreachable_test", HF_HUB_DISABLE_XET="1",
               HF_HOME=str(tmp_path / "hf-home"))
    cmd = [sys.executable, "-m", "emocurate", "push", str(run), "--repo", "user/name"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "", done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect") and "http://127.0.0.1:9" in lines[0], done.stderr
    debug = subprocess.run([sys.executable, "-m", "emocurate", "--debug", *cmd[3:]], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "hf_unreachable_test" not in debug.stderr
