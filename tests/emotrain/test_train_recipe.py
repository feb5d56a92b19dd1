from pathlib import Path

import pytest

from emocurate.core.config import ConfigError
from emotrain.recipe import TrainRecipe, load_recipe
from tests.helpers.paths import REPO

ROOT = REPO
RECIPES = sorted(p for p in (ROOT / "recipes" / "train").rglob("*.yaml") if p.parent.name != "baselines")
ABLATIONS = sorted((ROOT / "recipes" / "train" / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.relative_to(ROOT / "recipes" / "train").as_posix() for p in RECIPES])
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


def test_ablation_recipes_change_one_thing_and_name_their_row():
    """Each ablation inherits the main recipe (base:) and differs from it only in what its paper row changes."""
    from emocurate.core.config import to_dict

    main = to_dict(load_recipe(ROOT / "recipes/train/coemogen-emoset.yaml"))
    expected = {
        "table1-wo-lsem": {"loss.semantic": False},
        "table1-wo-emotion-loras": {"hilora.emotion_loras": False},
        "table1-wo-polarity-loras": {"hilora.polarity_loras": False},
        "table2b-input-learnable": {"emotion_input": "learnable"},
        "table2b-input-text": {"emotion_input": "text"},
        "table2c-lsem-mae": {"loss.semantic_type": "mae"},
        "table2c-lsem-mse": {"loss.semantic_type": "mse"},
        "table2c-lsem-kl": {"loss.semantic_type": "kl"},
        "table2a-captions-plain-one-sentence": {"paper.caption_prompt": "plain-one-sentence"},
        "table2a-captions-plain-detailed": {"paper.caption_prompt": "plain-detailed"},
        "table2a-captions-emotion-detailed": {"paper.caption_prompt": "emotion-detailed"},
    }
    assert sorted(p.stem for p in ABLATIONS) == sorted(expected)
    for path in ABLATIONS:
        assert path.read_text().count("\nbase: ../coemogen-emoset.yaml\n") == 1
        row = to_dict(load_recipe(path))
        changed = {f"{k}.{kk}" if isinstance(v, dict) else k: (vv if isinstance(v, dict) else v)
                   for k, v in row.items() for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)])
                   if (main[k].get(kk) if isinstance(v, dict) else main[k]) != (vv if isinstance(v, dict) else v)}
        assert changed.pop("paper.row").startswith("Table ")
        assert changed == expected[path.stem], path.name


def test_caption_ablation_curate_recipes_load():
    from emocurate.recipe import load_recipe as load_curate

    for path in sorted((ROOT / "recipes" / "curate" / "ablations").glob("*.yaml")):
        recipe = load_curate(path)
        assert recipe.caption.prompt in path.stem and recipe.clip_filter.drop_fraction == 0.2
        assert "emocurate build" in path.read_text().split("\n\n")[0]
