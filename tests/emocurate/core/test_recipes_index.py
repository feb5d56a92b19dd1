"""Shipped recipes by name: every namespace lists its recipes with a purpose; names, paths and wrong names resolve clearly."""

import pytest

from emocurate.core.config import ConfigError
from emocurate.core.recipes import KINDS, find_recipe, list_recipes, listing, recipes_root
from tests.helpers.paths import REPO


def test_a_checkout_reads_the_repository_recipes_in_place():
    assert recipes_root() == REPO / "recipes"
    main = {kind: [r.name for r in list_recipes(kind) if "/" not in r.name] for kind in KINDS}
    assert main == {"curate": ["demo", "emoart", "emoset"], "train": ["coemogen-emoart", "coemogen-emoset", "demo"],
                    "eval": ["emoset"]}
    train = [r.name for r in list_recipes("train")]
    assert train[:3] == main["train"] and "ablations/table1-wo-lsem" in train  # the main ones first, then subfolders
    assert not any(name.startswith("baselines/") for name in train)  # those are `emotrain baseline fit`'s


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_recipe_says_what_it_is_for_in_one_sentence(kind):
    for info in list_recipes(kind):
        first = info.path.read_text().splitlines()[0]
        assert first == f"# {info.purpose}" and info.purpose, info.path
        if "/" not in info.name:  # the main recipes: one short sentence, as `... recipes` shows them
            assert info.purpose.endswith(".") and len(info.purpose) <= 120, info.path


def test_names_paths_and_mistakes(tmp_path):
    assert find_recipe("emoart", "curate") == REPO / "recipes/curate/emoart.yaml"
    assert find_recipe("demo", "train") == REPO / "recipes/train/demo.yaml"  # same name, its own namespace
    assert find_recipe("ablations/table1-wo-lsem", "train") == REPO / "recipes/train/ablations/table1-wo-lsem.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("sources: [demo]\n")
    assert find_recipe(str(own), "curate") == own
    with pytest.raises(ConfigError, match="recipe file not found: nowhere/x.yaml"):
        find_recipe("nowhere/x.yaml", "curate")
    with pytest.raises(ConfigError, match=r"unknown curate recipe 'emoartt': give a YAML path or one of demo, emoart, "
                                          r"emoset \(`emocurate recipes` lists them all\)"):
        find_recipe("emoartt", "curate")
    with pytest.raises(ConfigError, match=r"'coemogen-emoset' is a train recipe \(`emotrain fit --recipe coemogen-emoset`\)"):
        find_recipe("coemogen-emoset", "curate")


def test_listing_names_the_command_of_each_namespace():
    lines = listing(["train", "eval"])
    assert lines[0] == "train recipes (emotrain fit --recipe NAME):"
    assert "eval recipes (emotrain eval --config NAME):" in lines
    assert lines[1].startswith("  coemogen-emoart   CoEmoGen on EmoArt") and "  ablations/table1-wo-lsem" in lines
