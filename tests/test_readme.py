"""The README's setup and its command examples say what the code does."""

import re

from tests.helpers.paths import REPO

README = (REPO / "README.md").read_text()


def test_the_fit_examples_overrides_load():
    # `optim.lr=5e-4` in the README was once rejected as a string (YAML 1.1 has no 5e-4 float)
    from emotrain.recipe import load_recipe

    lines = [line for line in README.splitlines() if line.startswith("emotrain fit ")]
    overrides = [word for line in lines for word in line.split() if re.fullmatch(r"[a-z_]+\.[a-z_.]+=\S+", word)]
    assert "optim.lr=5e-4" in overrides
    recipe = load_recipe(None, overrides)
    assert recipe.optim.lr == 5e-4 and recipe.run.mixed_precision == "bf16"


def test_setup_says_which_torch_build_it_installs():
    setup = README[README.index("## Quick start"):README.index("## The emotions")]
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup  # how to get the CPU wheels
    assert "PyPI on Linux gives the CUDA build" in setup and "avoid" not in setup.lower()
