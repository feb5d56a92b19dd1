from pathlib import Path

import pytest

from emocurate.core.config import ConfigError
from emotrain.recipe import TrainRecipe, load_recipe
from tests.helpers.paths import REPO

ROOT = REPO
RECIPES = sorted((ROOT / "recipes" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_load_and_say_how_to_launch(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, TrainRecipe)
    assert "emotrain fit" in path.read_text().split("\n\n")[0]  # the opening comment gives the command


def test_paper_defaults():
    r = load_recipe(None)
    assert (r.optim.lr, r.optim.betas, r.optim.weight_decay, r.optim.batch_size, r.optim.max_steps) == (
        1e-3, [0.9, 0.999], 1e-2, 1, 130_000)
    assert (r.hilora.rank, r.conditioning.mapper_hidden, r.conditioning.d0, r.loss.semantic_weight) == (4, 512, 768, 1.0)
    assert r.model.pretrained == "stable-diffusion-v1-5/stable-diffusion-v1-5" and r.emotion_input == "onehot"
    assert load_recipe(ROOT / "recipes/train/coemogen-emoart.yaml").data.emotions == [
        "amusement", "awe", "contentment", "anger", "fear", "sadness"]


@pytest.mark.parametrize("override, message", [
    ("loss.semantic_type=l3", "loss.semantic_type must be one of"),
    ("emotion_input=word", "emotion_input must be one of"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("data.emotions=[joy]", "unknown emotion"),
    ("hilora.emotion_loras=false", None),
    ("conditioning.prompt=a photo", "exactly once"),
])
def test_overrides_validate(override, message):
    if message is None:
        assert load_recipe(None, [override]).hilora.emotion_loras is False
        with pytest.raises(ConfigError, match="cannot both be false"):
            load_recipe(None, [override, "hilora.polarity_loras=false"])
    else:
        with pytest.raises(ConfigError, match=message):
            load_recipe(None, [override])
