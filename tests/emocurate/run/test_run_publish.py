import json

import pyarrow as pa
import pytest

from emocurate.store import shards
from emocurate.run.publish import EMOSET_NOTE, kept_table, push_run
from emocurate.run.folder import save_recipe
from emocurate.recipe import CurateRecipe


def test_kept_table_joins_bytes_and_spreads_metadata(tmp_path):
    shards.write_shard(tmp_path, "ingest", 0, pa.table({"seq": [0, 1, 2], "image_bytes": [b"a", b"b", b"a"]}))
    shards.write_shard(tmp_path, "ingest", 1, pa.table({"seq": [3], "image_bytes": [b"d"]}))
    records = pa.table({
        "seq": [0, 1, 2, 3], "shard": [0, 0, 0, 1], "status": ["kept", "dropped", "kept", "kept"],
        "id": ["h1", "h2", "h1", "h4"], "emotion": ["awe", "awe", "fear", "awe"], "caption": ["c1", None, "c3", "c4"],
        "emotion_confidence": [0.9, 0.1, 0.8, 0.7], "clip_score": [0.3, None, 0.2, 0.1], "source": ["hf:x"] * 4,
        "source_id": ["0", "1", "2", "3"], "width": [8] * 4, "height": [8] * 4,
        "metadata": [json.dumps({"artist": "goya", "image": "x"}), "{}", "{}", json.dumps({"genre": "portrait"})],
    })
    kept = kept_table(tmp_path, records).to_pylist()
    assert [k["sha256"] for k in kept] == ["h1", "h4"]  # the same sha256 kept twice (dedup off) is published once
    assert [k["image_bytes"] for k in kept] == [b"a", b"d"] and [k["caption"] for k in kept] == ["c1", "c4"]
    assert [k["artist"] for k in kept] == ["goya", None] and [k["genre"] for k in kept] == [None, "portrait"]
    assert kept[0]["meta_image"] == "x"  # names the published schema reserves are prefixed


def test_push_refuses_emoset_runs(tmp_path):
    recipe = CurateRecipe(sources=["emoset:/data/EmoSet-118K"])
    save_recipe(tmp_path, recipe)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "README.md").write_text("card")
    with pytest.raises(ValueError, match="refusing to push .* EmoSet images") as err:
        push_run(tmp_path, "user/name")
    assert EMOSET_NOTE in str(err.value)


def test_push_without_a_dataset_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `emocurate build` first"):
        push_run(tmp_path, "user/name")
