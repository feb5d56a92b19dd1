"""Textual Inversion and DreamBooth baselines end to end on tiny models: fit, resume, and sample through `generate`."""

import json

import numpy as np
import pytest
from PIL import Image

from emotrain.baselines.recipe import load_baseline_recipe
from emotrain.baselines.train import fit_baseline
from emotrain.generate import generate, load_run

TINY = ["model.pretrained=tiny:sd", "data.resolution=32", "optim.batch_size=2", "run.checkpoint_every=1",
        "run.keep_checkpoints=2", "run.cpu_threads=1"]


def recipe(method, *more):
    return load_baseline_recipe(None, method, [*TINY, *more])


def test_textual_inversion_learns_only_the_emotion_tokens(tiny_dataset, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    from emocurate.core.tiny import resolve

    out = fit_baseline(recipe("textual-inversion", "optim.max_steps=3"), tiny_dataset, tmp_path / "ti")
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "textual-inversion" and config["steps"] == 3
    assert config["tokens"] == {e: f"<{e}>" for e in ("amusement", "awe", "anger", "sadness")}
    assert config["recipe"]["optim"]["lr"] == 5e-4  # diffusers' textual-inversion default
    base = CLIPTextModel.from_pretrained(resolve("tiny:sd"), subfolder="text_encoder").get_input_embeddings().weight
    rows = {e: load_file(str(out / "embeddings" / f"{e}.safetensors"))[f"<{e}>"] for e in config["emotions"]}
    assert all(r.shape == (base.shape[1],) for r in rows.values())
    assert not torch.allclose(rows["awe"], rows["anger"])
    sampler = load_run(out, device="cpu")  # the pipeline with the four tokens loaded
    assert sampler.method == "textual-inversion" and sampler.emotions == config["emotions"]
    emb = sampler.pipe.text_encoder.get_input_embeddings().weight
    torch.testing.assert_close(emb[: base.shape[0]], base)  # every original row untouched
    awe = sampler.pipe.tokenizer.convert_tokens_to_ids("<awe>")
    torch.testing.assert_close(emb[awe], rows["awe"])
    paths = generate(out, "awe", 2, 0, tmp_path / "img", steps=2, sampler=sampler)
    assert [p.name for p in paths] == ["awe_s0_00000.png", "awe_s0_00001.png"] and Image.open(paths[0]).size == (32, 32)
    with pytest.raises(ValueError, match="one emotion at a time"):
        generate(out, {"awe": 0.5, "anger": 0.5}, 1, 0, tmp_path / "mix", steps=2, sampler=sampler)
    with pytest.raises(ValueError, match="no emotion transfer"):
        generate(out, "awe", 1, 0, tmp_path / "tr", prompt="a street", steps=2, sampler=sampler)


def test_dreambooth_fine_tunes_the_unet_and_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    import torch
    from diffusers import UNet2DConditionModel

    from emocurate.core.tiny import resolve

    straight = fit_baseline(recipe("dreambooth", "optim.max_steps=2", "optim.lr=1.0e-3"), tiny_dataset, tmp_path / "a")
    split = tmp_path / "b"
    fit_baseline(recipe("dreambooth", "optim.lr=1.0e-3"), tiny_dataset, split, max_steps=1)
    (split / "config.json").unlink()  # as if stopped after the step-1 checkpoint
    fit_baseline(recipe("dreambooth", "optim.max_steps=2", "optim.lr=1.0e-3"), tiny_dataset, split, resume="latest")
    a = UNet2DConditionModel.from_pretrained(straight / "unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(split / "unet").state_dict()
    base = UNet2DConditionModel.from_pretrained(resolve("tiny:sd"), subfolder="unet").state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it trained
    for k in a:
        torch.testing.assert_close(a[k], b[k])  # resumed == uninterrupted
    config = json.loads((straight / "config.json").read_text())
    assert config["tokens"]["awe"] == "awe" and config["prompt"] == "an image of {emotion}"
    sampler = load_run(straight, device="cpu")
    image = sampler([{"anger": 1.0}], [3], steps=2)[0]
    again = sampler([{"anger": 1.0}], [3], steps=2)[0]
    assert np.array_equal(np.asarray(image), np.asarray(again))  # per-image seeds


def test_recipe_errors():
    from emocurate.core.config import ConfigError

    with pytest.raises(ConfigError, match="exactly once"):
        load_baseline_recipe(None, "dreambooth", ["prompt=an image"])
    with pytest.raises(ConfigError, match="method must be one of"):
        load_baseline_recipe(None, "lora")
    assert load_baseline_recipe(None, "dreambooth").optim.lr == 5e-6
    assert load_baseline_recipe(None, "dreambooth", ["optim.lr=1.0e-5"]).optim.lr == 1e-5


@pytest.mark.parametrize("method", ["textual-inversion", "dreambooth"])
def test_shipped_baseline_recipes_load(method):
    from tests.helpers.paths import REPO

    path = REPO / "recipes" / "train" / "baselines" / f"{method}.yaml"
    parsed = load_baseline_recipe(path, method)
    assert parsed.method == method and parsed.prompt == "an image of {emotion}" and parsed.optim.max_steps == 130_000
    assert f"emotrain baseline fit --method {method}" in path.read_text().split("\n\n")[0]


def test_cli_fits_a_baseline_and_rejects_bad_input(tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from emotrain.cli import app

    out = tmp_path / "ti"
    result = CliRunner().invoke(app, ["baseline", "fit", "--method", "textual-inversion", "--dataset", tiny_dataset,
                                      "--out", str(out), "--max-steps", "1", *TINY])
    assert result.exit_code == 0, result.output
    assert (out / "embeddings" / "awe.safetensors").is_file() and "emotrain generate --model" in result.output
    bad = CliRunner().invoke(app, ["baseline", "fit", "--method", "lora", "--dataset", tiny_dataset, "--out", str(out)])
    assert bad.exit_code == 2 and "error: --method 'lora': use one of textual-inversion, dreambooth" in bad.output
    again = CliRunner().invoke(app, ["baseline", "fit", "--method", "textual-inversion", "--dataset", tiny_dataset,
                                     "--out", str(out), *TINY])
    assert again.exit_code == 2 and "already holds a run" in again.output
