"""Run-folder mechanics that need no model: ingest shards, resume after a partial run, the run identity check."""

import pytest

from emocurate.store import shards
from emocurate.core.config import ConfigError
from emocurate.stages.ingest import META_COLUMNS
from emocurate.run.driver import ingest_all
from emocurate.executors.local import InProcess
from emocurate.run.folder import prepare_run
from emocurate.store.manifest import INGEST_COMPLETE
from emocurate.recipe import CurateRecipe


def _recipe(folder, **kw):
    return CurateRecipe(sources=[f"folder:{folder}"], shard_size=4, **kw)


def _ingest(run, recipe):
    prepare_run(run, recipe)
    n = ingest_all(recipe, run, InProcess(recipe, run), lambda *a, **k: None)
    return n, shards.read_stage(run, "ingest", n)


def test_every_input_lands_in_exactly_one_shard(image_folder, tmp_path):
    n, table = _ingest(tmp_path / "run", _recipe(image_folder))
    assert n == 5 and table.num_rows == 19
    assert table.column("seq").to_pylist() == list(range(19))
    assert table.column("shard").to_pylist() == [i // 4 for i in range(19)]


def test_resume_after_partial_ingest_gives_the_same_shards(image_folder, tmp_path):
    recipe = _recipe(image_folder)
    _, whole = _ingest(tmp_path / "a", recipe)
    run = tmp_path / "b"
    _ingest(run, recipe)
    # simulate a kill during shard 2: its table written without a marker, later shards absent, a temp file left over
    (run / INGEST_COMPLETE).unlink()
    for i in (2, 3, 4):
        shards.marker_path(run, "ingest", i).unlink()
    for i in (3, 4):
        shards.shard_path(run, "ingest", i).unlink()
    shards.shard_path(run, "ingest", 3).with_name(".00003.parquet.999.tmp").write_bytes(b"partial")
    before = shards.shard_path(run, "ingest", 0).stat().st_mtime_ns
    n, resumed = _ingest(run, recipe)
    assert n == 5 and resumed.equals(whole)
    assert shards.shard_path(run, "ingest", 0).stat().st_mtime_ns == before  # finished shards are not redone
    assert not list(run.rglob("*.tmp"))


def test_rerun_with_other_inputs_is_refused(image_folder, tmp_path):
    _ingest(tmp_path / "run", _recipe(image_folder))
    with pytest.raises(ConfigError, match="was built with inputs shard_size=4"):
        prepare_run(tmp_path / "run", CurateRecipe(sources=[f"folder:{image_folder}"], shard_size=8))
    with pytest.raises(ConfigError, match="models classify"):
        recipe = _recipe(image_folder)
        recipe.classify.model = "tiny:other"
        prepare_run(tmp_path / "run", recipe)


def test_limit(image_folder, tmp_path):
    n, table = _ingest(tmp_path / "run", _recipe(image_folder, limit=6))
    assert n == 2 and table.num_rows == 6 and set(META_COLUMNS) < set(table.column_names)
