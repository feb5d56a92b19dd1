"""`emocurate build --source S` with nothing else: the source's own recipe, runs/<source> (a new name for other inputs),
the recipes command, and a preflight that names everything missing in one line before any work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emocurate.cli import app
from emocurate.core.config import ConfigError
from emocurate.core.emotions import EMOART_EMOTIONS, EMOTIONS
from emocurate.run.folder import prepare_run
from emocurate.run.defaults import natural_recipe, plan_build, run_name
from emocurate.run.preflight import NotReady, check_ready
from tests.helpers.paths import REPO


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_natural_recipes_and_run_names():
    assert [natural_recipe(s) for s in ("wikiart", "wikiart:/data/wa", "hf:huggan/wikiart", "emoset:/d/EmoSet-118K",
                                        "demo", "folder:/x", "hf:user/art", "urls:/l.txt")] == [
        "emoart", "emoart", "emoart", "emoset", "demo", None, None, None]
    assert [run_name([s]) for s in ("wikiart", "demo", "emoset:/d/EmoSet-118K:val", "folder:/data/my photos/",
                                    "hf:user/art:test", "urls:/x/list.txt")] == [
        "wikiart", "demo", "EmoSet-118K", "my-photos", "art", "list"]
    assert run_name(["demo", "folder:/a/b"]) == "demo+b"


def test_each_source_gets_its_recipe_and_says_which_first(in_tmp):
    art = plan_build(None, ["wikiart"], None, [])
    assert art.recipe.emotions == list(EMOART_EMOTIONS) and art.recipe.classify.backend == "clip-probe"
    assert art.notes == ["recipe: emoart (the recipe for source wikiart; choose another with --recipe NAME or PATH)",
                         "run folder: runs/wikiart (new)"] and art.out == Path("runs/wikiart")
    emoset = plan_build(None, ["emoset:/d/EmoSet-118K"], None, [])
    assert emoset.recipe.sources == ["emoset:/d/EmoSet-118K"] and "EmoSet-118K" in emoset.recipe.publish.pretty_name
    assert plan_build(None, ["demo"], None, []).recipe.classify.model == "tiny:clip"
    own = plan_build(None, ["folder:/data/photos"], None, ["limit=5"])
    assert own.recipe.emotions == list(EMOTIONS) and own.recipe.classify.min_confidence == 0.75 and own.recipe.limit == 5
    assert own.notes[0].startswith("recipe: the paper's default settings with all eight emotions (folder:/data/photos")
    mixed = plan_build(None, ["demo", "wikiart"], None, [])  # two sources with different recipes: the paper's defaults
    assert mixed.notes[0].startswith("recipe: the paper's default settings") and mixed.out == Path("runs/demo+wikiart")


def test_recipe_by_name_or_path_and_mistakes(in_tmp):
    chosen = plan_build("demo", [], in_tmp / "r", [])
    assert chosen.recipe.sources == ["demo"] and chosen.notes == []  # recipe and folder given: nothing to announce
    assert plan_build("demo", [], None, []).notes == ["run folder: runs/demo (new)"]
    assert plan_build(str(REPO / "recipes/curate/demo.yaml"), ["folder:/p"], None, []).recipe.sources == ["folder:/p"]
    with pytest.raises(ConfigError, match="give --source"):
        plan_build(None, [], None, [])
    with pytest.raises(ValueError, match="unknown source 'ftp:x'"):
        plan_build(None, ["ftp:x"], None, [])


def test_a_second_run_with_other_inputs_gets_a_new_folder(in_tmp):
    (in_tmp / "photos").mkdir()
    first = plan_build(None, ["folder:photos"], None, [])
    assert first.out == Path("runs/photos")
    prepare_run(first.out, first.recipe)  # what `build` writes first: run.json with the inputs and models
    again = plan_build(None, ["folder:photos"], None, ["classify.min_confidence=0.5"])  # a threshold: same run
    assert again.out == Path("runs/photos") and again.notes[1] == "run folder: runs/photos (resuming: same inputs and models)"
    other = plan_build(None, ["folder:photos"], None, ["limit=3"])
    assert other.out == Path("runs/photos-2")
    assert other.notes[1] == "run folder: runs/photos-2 (new; runs/photos holds a run of other inputs)"
    prepare_run(other.out, other.recipe)
    assert plan_build(None, ["folder:photos"], None, ["caption.model=tiny:captioner"]).out == Path("runs/photos-3")
    assert plan_build(None, ["folder:photos"], None, ["limit=3"]).out == Path("runs/photos-2")  # resumes its own run


def test_preflight_names_every_missing_thing(in_tmp, monkeypatch):
    from huggingface_hub import constants

    cache = in_tmp / "hub"
    (cache / "models--openai--clip-vit-large-patch14" / "snapshots" / ("0" * 40)).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = plan_build(None, ["wikiart", "folder:nowhere"], None, ["classify.backend=clip-probe", "classify.probe=probe"])
    with pytest.raises(NotReady) as err:
        check_ready(plan.recipe, plan.out)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot start: offline (HF_HUB_OFFLINE=1) and not in the Hugging "
                                                      "Face cache: dataset huggan/wikiart, model Qwen/Qwen2.5-VL-3B-Instruct")
    assert "openai/clip" not in message  # cached
    assert "source folder:nowhere: nowhere is not a directory (nothing is there)" in message and "classify.probe probe does not exist" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: only local things can be missing
    with pytest.raises(NotReady, match="^cannot start: source folder:nowhere"):
        check_ready(plan.recipe, plan.out)
    check_ready(plan_build(None, ["demo"], None, []).recipe, Path("runs/demo"))  # tiny models: nothing to fetch


def test_recipes_command_lists_and_shows():
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == "curate recipes (emocurate build --recipe NAME):"
    assert "  emoart   EmoArt as in the CoEmoGen paper" in result.output and "  ablations/emoset-captions-plain-detailed" in result.output
    shown = CliRunner().invoke(app, ["recipes", "show", "emoart"])
    assert shown.exit_code == 0 and shown.output == (REPO / "recipes/curate/emoart.yaml").read_text()
    wrong = CliRunner().invoke(app, ["recipes", "show", "coemogen-emoart"])
    assert wrong.exit_code == 2 and "is a train recipe" in wrong.output


def test_build_wikiart_offline_fails_in_one_line_before_any_work(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "emocurate", "build", "--source", "wikiart"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout.splitlines() == ["recipe: emoart (the recipe for source wikiart; choose another with --recipe NAME or "
                                        "PATH)", "run folder: runs/wikiart (new)"]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot start: offline (HF_HUB_OFFLINE=1) and not in the Hugging Face cache: dataset "
                           "huggan/wikiart, model openai/clip-vit-large-patch14, model Qwen/Qwen2.5-VL-3B-Instruct")
    assert "classify.probe models/emoset-probe does not exist" in line
    assert not (tmp_path / "runs").exists()
