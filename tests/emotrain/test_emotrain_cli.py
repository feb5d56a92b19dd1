"""The command line end to end on a tiny dataset: fit -> generate -> export, and clear failures."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emotrain.cli import app
from tests.helpers.paths import REPO

runner = CliRunner()
DEMO = str(REPO / "recipes" / "train" / "demo.yaml")


def test_fit_generate_export(tmp_path, tiny_dataset):
    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--dataset", tiny_dataset, "--recipe", DEMO, "--out", str(run),
                                 "--max-steps", "2", "run.validate_every=0", "run.samples_per_emotion=1",
                                 "run.inference_steps=2"])
    assert result.exit_code == 0, result.output
    assert "trained" in result.output and json.loads((run / "config.json").read_text())["steps"] == 2

    result = runner.invoke(app, ["generate", "--model", str(run), "--emotion", "awe", "-n", "2", "--steps", "2",
                                 "--out", str(tmp_path / "img")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "img").glob("awe_s0_0000*.png"))) == 2 and (tmp_path / "img" / "grids" / "awe_s0.png").exists()

    # several emotions: one folder each, which `emotrain eval --images` reads as it is
    result = runner.invoke(app, ["generate", "--model", str(run), "--emotion", "all", "-n", "2", "--steps", "2",
                                 "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["amusement", "anger", "awe", "sadness"]
    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "all"), "--out", str(tmp_path / "report"),
                                 "--device", "cpu", "metrics=[sem_d]", "clip.model=tiny:clip"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "report" / "results.json").read_text())["models"]["all"]["images"]["awe"] == 2
    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "r2"),
                                 "metrics=[sem_d]", "clip.model=tiny:clip"])
    assert result.exit_code == 2 and "generate with `emotrain generate --emotion all" in " ".join(result.output.split())

    result = runner.invoke(app, ["generate", "--model", str(run), "--mix", "awe:0.5,anger:0.5", "--prompt", "a lake",
                                 "-n", "1", "--steps", "2", "--out", str(tmp_path / "img")])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["export", "--model", str(run), "--emotion", "sadness", "--format", "kohya",
                                 "--out", str(tmp_path / "lora")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lora" / "sadness.safetensors").exists() and (tmp_path / "lora" / "emotion_sadness_lora.safetensors").exists()


def test_bad_dataset_fails_clearly(tmp_path, make_dataset, tiny_overrides):
    def edit(rows):
        rows["caption"][0] = ""
        rows["emotion"][1] = "joy"

    bad = make_dataset(tmp_path / "bad", edit=edit, n=8)
    result = runner.invoke(app, ["fit", "--dataset", bad, "--out", str(tmp_path / "run"), *tiny_overrides])
    assert result.exit_code == 2
    assert "2 problem(s) in 8 rows" in result.output and "'joy'" in result.output and "Traceback" not in result.output


def test_bad_override_and_missing_run(tmp_path, tiny_dataset):
    result = runner.invoke(app, ["fit", "--dataset", tiny_dataset, "--out", str(tmp_path / "r"), "optim.learning_rate=1"])
    assert result.exit_code == 2 and "unknown key(s) optim.learning_rate" in result.output
    result = runner.invoke(app, ["generate", "--model", str(tmp_path / "nothing"), "--emotion", "awe", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not a trained emotrain run" in result.output
    result = runner.invoke(app, ["generate", "--model", str(tmp_path), "--emotion", "awe", "--mix", "a:1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_zero_rows_and_a_file_out_are_one_error_line(tmp_path, make_dataset, tiny_overrides, monkeypatch):
    monkeypatch.delenv("EMOCURATE_DEBUG", raising=False)
    empty = make_dataset(tmp_path / "empty", n=0)
    # --recipe given: without it, a first line says the paper's settings are used (issue 15)
    result = runner.invoke(app, ["fit", "--dataset", empty, "--recipe", "demo", "--out", str(tmp_path / "run"),
                                 *tiny_overrides])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "has no rows" in lines[0], result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output and "IndexError" not in result.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, ["generate", "--model", str(tmp_path), "--emotion", "awe", "--out", str(afile)])
    assert result.exit_code == 2 and result.output.startswith("error: --out") and "is not a folder" in result.output
    monkeypatch.setenv("EMOCURATE_DEBUG", "1")  # the traceback instead of the line
    result = runner.invoke(app, ["fit", "--dataset", empty, "--out", str(tmp_path / "run"), *tiny_overrides])
    assert result.exit_code == 1 and type(result.exception).__name__ == "DatasetError"


def test_no_bar_before_the_inputs_are_checked_and_the_rate_counts_only_new_work(tmp_path):
    from emotrain import cli

    result = runner.invoke(app, ["generate", "--model", str(tmp_path / "nothing"), "--emotion", "awe", "-n", "3",
                                 "--out", str(tmp_path / "img")])
    assert result.exit_code == 2 and [line for line in result.output.splitlines() if line.strip()] == [
        line for line in result.output.splitlines() if line.startswith("error: ")]  # no "generate 0/3" bar
    clock = iter([130.0, 131.0, 132.0])  # the first report comes after model loading; 4 new images in the next 2 s
    with cli._Bar("generate", "img") as bar:
        bar.clock = lambda: next(clock)
        assert bar.bars is None
        bar.update(4, 12)  # 4 images were already on disk (resumed)
        assert bar.rate() is None
        bar.update(4, 12)
        bar.update(8, 12)
    assert bar.rate() == pytest.approx(2.0)
