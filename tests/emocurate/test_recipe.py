from pathlib import Path

import pytest

from emocurate.core.config import ConfigError
from emocurate.recipe import CurateRecipe, check_refilter_overrides, load_recipe
from tests.helpers.paths import REPO

RECIPES = sorted((REPO / "recipes" / "curate").glob("*.yaml"))


def test_recipes_exist():
    assert {p.name for p in RECIPES} >= {"demo.yaml", "emoart.yaml", "emoset.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_opens_with_its_command(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, CurateRecipe) and recipe.sources
    head = path.read_text().split("\nsources:")[0]
    assert head.startswith("# ") and "emocurate build --" in head


def test_emoart_matches_the_paper():
    recipe = load_recipe(RECIPES[[p.name for p in RECIPES].index("emoart.yaml")])
    assert recipe.emotions == ["amusement", "awe", "contentment", "anger", "fear", "sadness"]
    assert recipe.classify.min_confidence == 0.75 and recipe.clip_filter.drop_fraction == 0.2
    assert recipe.sources == ["wikiart"] and "huggan/wikiart" in recipe.publish.source_datasets
    assert "emoart" != recipe.publish.pretty_name.strip().lower()


@pytest.mark.parametrize("override, message", [
    ("classify.min_confidence=1.5", "min_confidence must be in \\[0, 1\\]"),
    ("emotions=[joy]", "unknown emotion"),
    ("sources=[ftp:x]", "unknown source 'ftp:x'"),
    ("sources=[]", "sources is empty"),
    ("shard_size=0", "shard_size must be >= 1"),
    ("clip_filter.drop_fraction=1.0", "drop_fraction"),
    ("classify.bogus=1", "unknown key"),
    ("limit=0", "limit must be >= 1"),
])
def test_config_errors_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(RECIPES[0], [override])


def test_refilter_accepts_decision_keys_only():
    check_refilter_overrides(["classify.min_confidence=0.5", "clip_filter.drop_fraction=0.1", "emotions=[awe]"])
    with pytest.raises(ConfigError, match="refilter cannot change 'caption.model'"):
        check_refilter_overrides(["caption.model=x"])
