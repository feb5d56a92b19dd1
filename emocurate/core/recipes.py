"""The recipes shipped with the package, addressed by name (`--recipe emoart`) or by path: list, find, purpose.

Namespaces are folders: curate/ (emocurate build), train/ (emotrain fit), eval/ (emotrain eval). It reads no recipe's
values; `emocurate.recipe` / `emotrain.recipe` load and validate them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from emocurate.core.config import ConfigError

KINDS = ("curate", "train", "eval")
COMMANDS = {"curate": "emocurate build --recipe", "train": "emotrain fit --recipe", "eval": "emotrain eval --config"}
LISTERS = {"curate": "emocurate recipes", "train": "emotrain recipes", "eval": "emotrain recipes"}


class RecipeInfo(NamedTuple):
    name: str
    purpose: str
    """The recipe's first comment line."""
    path: Path


def recipes_root() -> Path:
    """A wheel carries the repository's recipes/ as `emocurate/recipes/` (pyproject maps it); a checkout reads it in place."""
    package = Path(__file__).resolve().parents[1]  # emocurate/
    packaged = package / "recipes"
    return packaged if packaged.is_dir() else package.parent / "recipes"


def purpose(path: Path) -> str:
    """The first comment line of a recipe: what the run is for."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def list_recipes(kind: str) -> list[RecipeInfo]:
    """The shipped recipes of one namespace, sorted by name."""
    if kind not in KINDS:
        raise ValueError(f"recipe kind must be one of {', '.join(KINDS)}; got {kind!r}")
    folder = recipes_root() / kind
    return [RecipeInfo(p.stem, purpose(p), p) for p in sorted(folder.glob("*.yaml"))]


def find_recipe(value: str | Path, kind: str) -> Path:
    """A recipe path from a name (`emoart`) or a path (anything with a `/` or a .yaml/.yml suffix); a clear error otherwise."""
    text = str(value)
    if "/" in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {text}")
        return path
    shipped = {r.name: r.path for r in list_recipes(kind)}
    if text in shipped:
        return shipped[text]
    elsewhere = [k for k in KINDS if k != kind and any(r.name == text for r in list_recipes(k))]
    hint = f"; {text!r} is a {elsewhere[0]} recipe (`{COMMANDS[elsewhere[0]]} {text}`)" if elsewhere else ""
    raise ConfigError(f"unknown {kind} recipe {text!r}{hint}: give a YAML path or one of {', '.join(shipped)} "
                      f"(`{LISTERS[kind]}` lists them)")


def listing(kinds: list[str]) -> list[str]:
    """Lines for `emocurate recipes` / `emotrain recipes`: per namespace, how to use it, then name and purpose of each."""
    lines = []
    for kind in kinds:
        lines.append(f"{kind} recipes ({COMMANDS[kind]} NAME):")
        lines += [f"  {info.name:<18} {info.purpose}" for info in list_recipes(kind)]
    return lines
