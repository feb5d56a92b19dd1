"""`emotrain fit --dataset D` with nothing else: the paper's settings with the dataset's own emotions, runs/<D>-coemogen,
recipes by name, and Hub ids downloaded through the loopback fake Hub (one-line errors offline and for private repos)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emocurate.core.config import ConfigError
from emotrain.cli import app
from emotrain.defaults import check_models, dataset_name, pick_out, plan_fit
from tests.helpers.paths import REPO

EMOART = ["amusement", "awe", "contentment", "anger", "fear", "sadness"]
TOKEN = "hf_fitDefaultsTestToken0000000000000"
TINY = ["model.pretrained=tiny:sd", "model.clip=tiny:clip", "data.resolution=32", "conditioning.mapper_hidden=16",
        "conditioning.d0=24", "run.report_to=none", "run.validate_every=0", "run.samples_per_emotion=0",
        "run.inference_steps=2", "run.checkpoint_every=1", "run.cpu_threads=1"]


def test_dataset_names_and_run_folders(tmp_path):
    assert dataset_name("user/emoart") == "emoart"
    assert dataset_name("runs/demo/dataset") == "demo" and dataset_name("runs/demo/dataset/") == "demo"
    assert dataset_name("/data/my photos") == "my-photos"
    base = tmp_path / "runs" / "emoart-coemogen"
    assert pick_out(base, None) == (base, "new")
    (base / "checkpoints").mkdir(parents=True)
    folder, note = pick_out(base, None)
    assert folder == base.with_name("emoart-coemogen-2") and "--resume latest" in note
    assert pick_out(base, "latest") == (base, "resuming")


def test_plan_defaults_and_recipes_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = plan_fit("user/emoart", None, None, [])
    assert plan.out == Path("runs/emoart-coemogen") and plan.recipe.data.emotions is None
    assert plan.recipe.optim.max_steps == 130_000 and plan.recipe.hilora.rank == 4
    assert plan.notes[0].startswith("recipe: the paper's settings") and "dataset's own emotions" in plan.notes[0]
    assert plan.notes[1] == "run folder: runs/emoart-coemogen (new)"
    chosen = plan_fit("x/y", "demo", tmp_path / "o", [])
    assert chosen.recipe.model.pretrained == "tiny:sd" and chosen.notes == []  # nothing left to a default: no lines
    assert plan_fit("x/y", "coemogen-emoart", None, []).recipe.data.emotions == EMOART
    assert plan_fit("x/y", str(REPO / "recipes/train/demo.yaml"), None, []).recipe.optim.max_steps == 8  # a path works
    with pytest.raises(ConfigError, match="'emoart' is a curate recipe"):
        plan_fit("x/y", "emoart", None, [])


def test_recipes_command_lists_train_and_eval():
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0
    assert "coemogen-emoart   CoEmoGen on EmoArt" in result.output and "emotrain eval --config NAME" in result.output
    shown = CliRunner().invoke(app, ["recipes", "show", "coemogen-emoset"])
    assert shown.output == (REPO / "recipes/train/coemogen-emoset.yaml").read_text()
    assert CliRunner().invoke(app, ["recipes", "show", "emoset"]).output == (REPO / "recipes/eval/emoset.yaml").read_text()


def test_offline_hub_id_fails_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "emotrain", "fit", "--dataset", "user/emoart"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: dataset 'user/emoart' is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
        "forbids downloading it: run once online (or unset HF_HUB_OFFLINE), or pass a local folder"]
    assert not (tmp_path / "runs").exists()


def test_validate_says_where_the_emotions_come_from(tmp_path, make_dataset):
    from emotrain.data import load_training_dataset, validate
    from emotrain.recipe import DataConfig

    labelled = make_dataset(tmp_path / "cl", class_label=True, n=8)
    got = validate(load_training_dataset(labelled), DataConfig(), check_images=False)
    assert got.emotions == ["amusement", "awe", "anger", "sadness"] and got.emotions_from == "the dataset's ClassLabel names"
    plain = make_dataset(tmp_path / "str", n=8)
    assert validate(load_training_dataset(plain), DataConfig(), check_images=False).emotions_from == "the dataset's values"
    import datasets

    ds = load_training_dataset(plain).cast_column(  # string -> ClassLabel maps by name: rows for 4 of the 6 names
        "emotion", datasets.ClassLabel(names=["amusement", "awe", "contentment", "anger", "fear", "sadness"]))
    got = validate(ds, DataConfig(), check_images=False)
    assert got.emotions_from == "the dataset's ClassLabel names; no rows for contentment, fear: not learned"


def emoart_parquet() -> bytes:
    """A six-emotion EmoArt-like dataset (ClassLabel names = EmoArt's six), as the parquet file a Hub repo holds."""
    import datasets

    from tests.emotrain.conftest import png_bytes

    labels = [EMOART[i % 6] for i in range(12)]
    features = datasets.Features({"image": datasets.Image(), "emotion": datasets.ClassLabel(names=EMOART),
                                  "caption": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(i), "path": None} for i in range(12)],
                                     "emotion": [EMOART.index(e) for e in labels],
                                     "caption": [f"a painting that evokes {e}" for e in labels]}, features=features)
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


def hub_env(hub, tmp_path, token: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(hub.env(token or ""), HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO),
               HF_DATASETS_DISABLE_PARQUET_EXPORT="1")
    env.pop("HF_HUB_CACHE", None)
    if token is None:
        env.pop("HF_TOKEN")
    return env


@pytest.mark.slow
def test_fit_a_hub_dataset_with_no_recipe_and_no_out(tmp_path):
    from tests.helpers.fakehub import FakeHub

    with FakeHub() as hub:
        hub.add_files("dataset", "user/emoart", {"data/train-00000-of-00001.parquet": emoart_parquet()})
        done = subprocess.run([sys.executable, "-m", "emotrain", "fit", "--dataset", "user/emoart", "--max-steps", "1",
                               *TINY], cwd=tmp_path, env=hub_env(hub, tmp_path, TOKEN), capture_output=True, text=True,
                              timeout=600)
        assert not hub.errors
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("recipe: the paper's settings") and lines[1] == "run folder: runs/emoart-coemogen (new)"
    flat = " ".join(done.stdout.split())
    assert "emotions (the dataset's ClassLabel names): amusement, awe, contentment, anger, fear, sadness (6)" in flat
    assert (tmp_path / "runs" / "emoart-coemogen" / "config.json").exists() and TOKEN not in done.stdout + done.stderr


def test_private_hub_dataset_without_token_fails_in_one_line(tmp_path):
    from tests.helpers.fakehub import FakeHub

    with FakeHub() as hub:
        hub.add_files("dataset", "user/secret", {"data/train-00000-of-00001.parquet": b"PAR1"}, private=True)
        done = subprocess.run([sys.executable, "-m", "emotrain", "fit", "--dataset", "user/secret", *TINY], cwd=tmp_path,
                              env=hub_env(hub, tmp_path, None), capture_output=True, text=True, timeout=300)
        assert any("user/secret" in path for _, path in hub.requests)  # it did ask the Hub
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        "error: dataset 'user/secret' was not found on the Hub, or it is private or gated and no token is set: set "
        "HF_TOKEN (or run `hf auth login`) with read access to it"]


def test_unreachable_hub_fails_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO))  # a closed port
    done = subprocess.run([sys.executable, "-m", "emotrain", "fit", "--dataset", "user/emoart"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]  # the network refused: exit 1, as every command line reports it
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot connect: could not reach the Hub for dataset 'user/emoart' (set HF_HUB_OFFLINE=1")


def test_offline_names_the_uncached_base_models(tmp_path, monkeypatch):
    from huggingface_hub import constants

    (tmp_path / "models--openai--clip-vit-large-patch14" / "snapshots" / ("0" * 40)).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"^offline \(HF_HUB_OFFLINE=1\) and not in the Hugging Face cache: model "
                                          r"stable-diffusion-v1-5/stable-diffusion-v1-5 \(run once online"):
        check_models(plan_fit("x/y", None, tmp_path / "o", []).recipe)
    check_models(plan_fit("x/y", "demo", tmp_path / "o", []).recipe)  # tiny models: nothing to fetch
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_models(plan_fit("x/y", None, tmp_path / "o", []).recipe)  # online: downloads are allowed
