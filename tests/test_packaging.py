"""pyproject lists every package a wheel must carry: each folder with an __init__.py, plus cards/ and recipes/."""

import tomllib

from setuptools import find_packages

from tests.helpers.paths import REPO


def test_pyproject_lists_every_package_and_maps_the_data_folders():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set(find_packages(str(REPO), include=["emocurate", "emocurate.*", "emotrain", "emotrain.*"]))
    recipe_dirs = [d.relative_to(REPO / "recipes") for d in (REPO / "recipes").rglob("*") if d.is_dir()]
    data = {"emocurate.cards", "emocurate.recipes", *("emocurate.recipes." + ".".join(d.parts) for d in recipe_dirs)}
    assert set(config["packages"]) == on_disk | data
    assert config["package-dir"] == {"emocurate.cards": "cards", "emocurate.recipes": "recipes"}
    for name in data - {"emocurate.cards", "emocurate.recipes"}:
        assert config["package-data"][name] == ["*.yaml"]
