from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from emocurate.core.config import ConfigError, load


@dataclass
class Inner:
    min_confidence: float = 0.75
    backend: Literal["a", "b"] = "a"

    def __post_init__(self):
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1]; got {self.min_confidence}")


@dataclass
class Outer:
    name: str = "x"
    seed: int = 0
    emotions: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    note: Optional[str] = None


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: demo\ninner:\n  backend: b\n")
    cfg = load(Outer, path, ["inner.min_confidence=0.5", "emotions=[awe, fear]", "seed=3"])
    assert cfg == Outer(name="demo", seed=3, emotions=["awe", "fear"], inner=Inner(0.5, "b"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("inner.min_conf=0.5", "unknown key\\(s\\) inner.min_conf"),
        ("bogus=1", "unknown key\\(s\\) bogus"),
        ("inner.backend=c", "inner.backend must be one of"),
        ("seed=abc", "seed must be int"),
        ("inner.min_confidence=3.2", "min_confidence must be in \\[0, 1\\]; got 3.2"),
        ("novalue", "must look like key=value"),
    ],
)
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load(Outer, None, [override])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load(Outer, tmp_path / "nope.yaml")


def test_base_recipe_is_inherited_and_overridden(tmp_path):
    (tmp_path / "main.yaml").write_text("name: main\nseed: 1\nemotions: [awe, fear]\ninner:\n  backend: b\n  min_confidence: 0.9\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "row.yaml").write_text("base: ../main.yaml\nemotions: [awe]\ninner:\n  min_confidence: 0.2\n")
    cfg = load(Outer, tmp_path / "sub" / "row.yaml", ["seed=4"])
    # sections merge key by key (backend kept from the base), lists are replaced whole, overrides win over both
    assert cfg == Outer(name="main", seed=4, emotions=["awe"], inner=Inner(0.2, "b"))


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="base chain loops"):
        load(Outer, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml \\(the base of .*c.yaml\\)"):
        load(Outer, tmp_path / "c.yaml")


def test_scientific_notation_is_a_number_in_overrides_and_files(tmp_path):
    # YAML 1.1 reads `5e-4` as a string; the README's own `optim.lr=5e-4` must work
    from emotrain.recipe import TrainRecipe

    cfg = load(Inner, None, ["min_confidence=5e-1"])
    assert cfg.min_confidence == 0.5
    recipe = load(TrainRecipe, None, ["optim.lr=5e-4"])
    assert recipe.optim.lr == 5e-4
    path = tmp_path / "r.yaml"
    path.write_text("seed: 2e1\ninner:\n  min_confidence: 7.5E-1\n")
    assert load(Outer, path) == Outer(seed=20, inner=Inner(0.75))
    with pytest.raises(ConfigError, match="seed must be int; got 2.5"):
        load(Outer, None, ["seed=2.5"])


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: demo\ninner:\n  backend: [a, b\n")
    with pytest.raises(ConfigError, match=r"r.yaml: line \d+, column \d+: not valid YAML"):
        load(Outer, path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(Outer, None, ["emotions=[awe, fear"])
