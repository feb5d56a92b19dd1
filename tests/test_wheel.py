"""The project as users get it: a wheel (not an editable install) in a fresh virtual environment, used from an empty
folder. The commands run as the README writes them: build the demo, train on it, generate; wikiart offline fails in one
line. The new environment reaches the already installed dependencies through a .pth file; the project itself comes
only from the wheel (PYTHONPATH is cleared and the test checks where `emocurate` was imported from).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("EMOTRAIN_RUN_SLOW") != "1",
                       reason="builds and installs a wheel, then a demo build + fit + generate (~3-4 min): EMOTRAIN_RUN_SLOW=1"),
]
SOURCES = ("emocurate", "emotrain", "cards", "recipes", "pyproject.toml", "README.md")


def build_wheel(root: Path) -> Path:
    """`pip wheel` from a copy of the sources (the checkout gets no build/ or egg-info), without build isolation."""
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(root / "dist"), str(src)], cwd=root)
    [wheel] = (root / "dist").glob("coemogen_toolkit-*.whl")
    return wheel


def make_venv(root: Path, wheel: Path) -> Path:
    """A fresh venv whose .pth file adds this interpreter's site-packages (torch, diffusers, ...), then the wheel."""
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip())
    (site / "_existing_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the dependencies' folder also holds this checkout's editable install, which must not count
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)], cwd=root)
    return venv


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """(venv, empty folder, environment) for commands typed as a user would."""
    root = tmp_path_factory.mktemp("wheel")
    venv = make_venv(root, build_wheel(root))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HF_HUB_CACHE")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf-home"),
               OMP_NUM_THREADS="1")
    folder = root / "empty"
    folder.mkdir()
    return venv, folder, env


def modules() -> list[str]:
    import pkgutil

    import emocurate
    import emotrain

    return sorted(m.name for p in (emocurate, emotrain) for m in pkgutil.walk_packages(p.__path__, p.__name__ + "."))


def test_the_wheel_carries_every_module_and_its_data(user):
    venv, folder, env = user
    code = ("import json, emocurate; from emocurate.core.recipes import recipes_root; "
            "from emocurate.publish.card import CARD_TEMPLATE; from tests_wheel_modules import modules; "
            "print(json.dumps([emocurate.__file__, str(recipes_root()), str(CARD_TEMPLATE), modules()]))")
    (folder.parent / "probe").mkdir(exist_ok=True)
    (folder.parent / "probe" / "tests_wheel_modules.py").write_text(
        "import pkgutil, emocurate, emotrain\n" + "def modules():\n" + "    return sorted(m.name for p in (emocurate, emotrain) "
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'))\n")
    found = json.loads(run([str(venv / "bin" / "python"), "-c", code], cwd=folder,
                           env={**env, "PYTHONPATH": str(folder.parent / "probe")}).stdout)
    site = str(venv / "lib")
    assert all(path.startswith(site) for path in found[:3]), found[:3]  # the wheel's copy, not the checkout
    assert Path(found[1], "curate", "emoart.yaml").is_file() and Path(found[2]).is_file()
    assert found[3] == modules()  # every module of the checkout, subpackages included
    listing = run(["emocurate", "recipes"], cwd=folder, env=env).stdout
    assert "emoart" in listing and "demo" in listing and "coemogen-emoart" in run(["emotrain", "recipes"], folder, env).stdout


def test_wikiart_offline_fails_in_one_clear_line(user):
    _, folder, env = user
    done = run(["emocurate", "build", "--source", "wikiart"], cwd=folder, env=env, check=False)
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith("recipe: emoart")
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot start: offline (HF_HUB_OFFLINE=1)") and "huggan/wikiart" in line
    assert "Traceback" not in done.stderr and not (folder / "runs").exists()


def test_build_the_demo_train_on_it_and_generate(user):
    _, folder, env = user
    built = run(["emocurate", "build", "--source", "demo"], cwd=folder, env=env)
    assert built.stdout.splitlines()[:2] == [
        "recipe: demo (the recipe for source demo; choose another with --recipe NAME or PATH)", "run folder: runs/demo (new)"]
    assert (folder / "runs/demo/dataset/README.md").is_file()

    fit = run(["emotrain", "fit", "--dataset", "runs/demo/dataset", "--recipe", "demo", "--max-steps", "2"], folder, env)
    assert fit.stdout.splitlines()[0] == "run folder: runs/demo-coemogen (new)"  # the recipe was given: not announced
    config = json.loads((folder / "runs/demo-coemogen/config.json").read_text())
    assert config["steps"] == 2 and config["emotions"]

    emotion = config["emotions"][0]
    made = run(["emotrain", "generate", "--model", "runs/demo-coemogen", "--emotion", emotion, "-n", "2", "--steps", "2"],
               folder, env)
    assert "wrote 2 images to runs/demo-coemogen/generated" in made.stdout
    assert len(list((folder / "runs/demo-coemogen/generated").glob(f"{emotion}_*.png"))) == 2
