import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from emocurate.cli import app

ROOT = Path(__file__).parents[2]
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

    from emocurate.classify import ClassifyConfig, load_classifier
    from tests.emocurate.conftest import photo
    from tests.emocurate.test_sources import make_emoset

    root = make_emoset(tmp_path / "EmoSet-118K", (9, 0, 0))
    result = CliRunner().invoke(app, ["train-classifier", "--dataset", f"emoset:{root}", "--out", str(tmp_path / "probe"),
                                      "--clip-model", "tiny:clip", "--epochs", "3", "--batch-size", "4",
                                      "--val-fraction", "0", "--emotions", "amusement,awe,sadness"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])  # the metrics
    cfg = ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe"))
    probs = load_classifier(cfg, ["amusement", "awe", "sadness"]).predict([photo(1)])
    assert probs.shape == (1, 3)
