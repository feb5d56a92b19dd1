"""Symlinks and special files in a `folder:` source: by default it stays inside its folder (links out, loops, broken
links and fifos are dropped with a reason, never read or lost); links inside it are followed; follow_symlinks reads out."""

from __future__ import annotations

import os

import pytest

from emocurate.executors.local import InProcess
from emocurate.recipe import CurateRecipe, load_recipe
from emocurate.run.driver import ingest_all
from emocurate.run.folder import prepare_run
from emocurate.sources import iter_items
from emocurate.sources.folder import iter_folder
from emocurate.store import shards
from tests.helpers.images import jpeg


@pytest.fixture()
def linked(tmp_path):
    """root/ with real files, links inside it, links out of it (to `outside/`), loops, a broken link and a fifo."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "amusement").mkdir(parents=True)
    (root / "fear").mkdir()
    (outside / "pics").mkdir(parents=True)
    (root / "amusement" / "a.jpg").write_bytes(jpeg(1))
    (outside / "secret.txt").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")  # stands in for /etc/passwd
    (outside / "pics" / "o.jpg").write_bytes(jpeg(2))
    os.symlink(outside / "secret.txt", root / "amusement" / "passwd")  # a file link out
    os.symlink(outside / "pics", root / "awe")  # a directory link out
    os.symlink("../amusement", root / "fear" / "inner")  # a directory link inside: followed
    os.symlink("amusement/a.jpg", root / "top.jpg")  # a file link inside: read
    os.symlink(".", root / "loop")  # a loop to the root
    os.symlink("..", root / "amusement" / "up")  # a loop to an ancestor
    os.symlink("nowhere.jpg", root / "broken.jpg")
    os.mkfifo(root / "pipe.jpg")  # reading it would block forever
    return root, outside


def by_id(items):
    return {it.source_id: it for it in items}


def test_a_folder_source_stays_inside_its_folder_by_default(linked):
    root, _ = linked
    items = by_id(iter_folder(str(root), "folder:x"))
    assert list(items) == sorted(items)
    read = {k: it.data for k, it in items.items() if it.error is None}
    assert read == {"amusement/a.jpg": jpeg(1), "fear/inner/a.jpg": jpeg(1), "top.jpg": jpeg(1)}
    assert items["fear/inner/a.jpg"].label == "fear"  # a directory link inside the root no longer vanishes
    reasons = {k: it.error.split(":")[0] for k, it in items.items() if it.error}
    assert reasons == {
        "amusement/passwd": "symlink_outside_root", "fear/inner/passwd": "symlink_outside_root",
        "awe": "symlink_outside_root", "loop": "symlink_loop",
        "amusement/up": "symlink_loop", "fear/inner/up": "symlink_loop", "broken.jpg": "broken_symlink",
        "pipe.jpg": "not_a_file",
    }  # fmt: skip
    assert all(items[k].data is None for k in reasons)
    assert "follow_symlinks" in items["amusement/passwd"].error and "secret.txt" in items["amusement/passwd"].error


def test_follow_symlinks_reads_links_out_of_the_folder_but_never_loops(linked):
    root, outside = linked
    items = by_id(iter_items([f"folder:{root}"], None, follow_symlinks=True))
    assert items["amusement/passwd"].data == (outside / "secret.txt").read_bytes()
    assert items["awe/o.jpg"].data == jpeg(2) and items["awe/o.jpg"].label == "awe"
    assert items["loop"].error.startswith("symlink_loop") and items["pipe.jpg"].error.startswith("not_a_file")


def test_the_recipe_option_reaches_ingest_and_drops_are_recorded(linked, tmp_path):
    root, _ = linked
    assert load_recipe(None, [f"sources=[folder:{root}]", "follow_symlinks=true"]).follow_symlinks is True
    for follow, run in ((False, tmp_path / "run-default"), (True, tmp_path / "run-follow")):
        recipe = CurateRecipe(sources=[f"folder:{root}"], shard_size=4, follow_symlinks=follow)
        prepare_run(run, recipe)
        n = ingest_all(recipe, run, InProcess(recipe, run), lambda *a, **k: None)
        table = shards.read_stage(run, "ingest", n)
        errors = dict(zip(table.column("source_id").to_pylist(), table.column("ingest_error").to_pylist()))
        assert errors["amusement/a.jpg"] is None and errors["fear/inner/a.jpg"] is None
        assert (errors["amusement/passwd"] or "").startswith("symlink_outside_root") != follow
        assert errors["loop"].startswith("symlink_loop")
