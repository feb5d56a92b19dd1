"""The command line end to end on a tiny dataset: fit -> generate -> export, and clear failures."""

import json
from pathlib import Path

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
