"""The import rules of ARCHITECTURE.md: import-linter's contracts (pyproject.toml), no private names imported across
modules, no existence checks for the project's own modules."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

PACKAGES = ("emocurate", "emotrain")


def _modules():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "5 kept" in result.stdout


def test_no_private_names_imported_from_another_module():
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                found += [f"{path.relative_to(REPO)}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found


def test_no_existence_checks_for_the_projects_own_modules():
    pattern = re.compile(r"""(find_spec|importorskip)\(\s*["'](emocurate|emotrain)""")
    offenders = [str(p.relative_to(REPO)) for p in [*_modules(), *sorted((REPO / "tests").rglob("*.py"))]
                 if p.name != "test_architecture.py" and pattern.search(p.read_text())]
    assert not offenders, offenders


def test_every_model_stage_has_one_spelling():
    """The stage table's names are the recipe sections and the `dropped_by` values decide() writes."""
    from emocurate.recipe import CurateRecipe
    from emocurate.run.decide import NOT_DONE
    from emocurate.stages.table import MODEL_STAGES

    names = [stage.name for stage in MODEL_STAGES]
    assert names == ["classify", "caption", "clip_filter"] and sorted(NOT_DONE) == sorted(names)
    assert all(name in CurateRecipe.__dataclass_fields__ for name in names)
    source = "\n".join(p.read_text() for p in _modules())
    assert "clipscore" not in re.sub(r'LEGACY_FOLDERS = \{"clip_filter": "clipscore"\}', "", source)
