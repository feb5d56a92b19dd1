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
