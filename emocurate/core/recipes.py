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


SEPARATE = {"train": ("baselines",)}
"""Subfolders that are not recipes of their namespace's command (train/baselines/ is for `emotrain baseline fit`)."""


def list_recipes(kind: str) -> list[RecipeInfo]:
    """The shipped recipes of one namespace, sorted: the main ones, then subfolders' (`ablations/table1-wo-lsem`)."""
    if kind not in KINDS:
        raise ValueError(f"recipe kind must be one of {', '.join(KINDS)}; got {kind!r}")
    folder = recipes_root() / kind
    paths = [p for p in folder.rglob("*.yaml") if p.relative_to(folder).parts[0] not in SEPARATE.get(kind, ())]
    paths.sort(key=lambda p: (len(p.relative_to(folder).parts), p.relative_to(folder).as_posix()))
    return [RecipeInfo(p.relative_to(folder).with_suffix("").as_posix(), purpose(p), p) for p in paths]


def find_recipe(value: str | Path, kind: str) -> Path:
    """A recipe path from a name (`emoart`) or a path (anything with a `/` or a .yaml/.yml suffix); a clear error otherwise."""
    text = str(value)
    shipped = {r.name: r.path for r in list_recipes(kind)}
    if text in shipped and not Path(text).is_file():
        return shipped[text]
    if "/" in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {text}")
        return path
    elsewhere = [k for k in KINDS if k != kind and any(r.name == text for r in list_recipes(k))]
    hint = f"; {text!r} is a {elsewhere[0]} recipe (`{COMMANDS[elsewhere[0]]} {text}`)" if elsewhere else ""
    main = [name for name in shipped if "/" not in name]
    raise ConfigError(f"unknown {kind} recipe {text!r}{hint}: give a YAML path or one of {', '.join(main)} "
                      f"(`{LISTERS[kind]}` lists them all)")


def listing(kinds: list[str]) -> list[str]:
    """Lines for `emocurate recipes` / `emotrain recipes`: per namespace, how to use it, then name and purpose of each."""
    lines = []
    for kind in kinds:
        infos = list_recipes(kind)
        width = max((len(i.name) for i in infos if "/" not in i.name), default=0) + 2
        lines.append(f"{kind} recipes ({COMMANDS[kind]} NAME):")
        for info in infos:  # subfolder names are long: their purpose goes on the next line
            lines += [f"  {info.name:<{width}} {info.purpose}"] if "/" not in info.name else [f"  {info.name}",
                                                                                            f"      {info.purpose}"]
    return lines
