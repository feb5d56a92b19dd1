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
