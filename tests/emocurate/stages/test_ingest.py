import hashlib

from emocurate.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from emocurate.stages.ingest import ingest_shard, missing_id
from emocurate.sources.item import SourceItem
from tests.helpers.images import bad_files, jpeg, odd_modes


def _ingest(items):
    return ingest_shard(items, shard=3, first_seq=10, max_pixels=DEFAULT_MAX_PIXELS, max_side=DEFAULT_MAX_SIDE).to_pylist()


def test_bad_inputs_are_recorded_with_reasons():
    items = [SourceItem("folder:x", name, data) for name, data in bad_files().items()]
    rows = {r["source_id"]: r for r in _ingest(items)}
    assert len(rows) == len(items)
    assert rows["empty.jpg"]["ingest_error"] == "empty_file"
    assert rows["text_named.jpg"]["ingest_error"].startswith("not_an_image")
    assert rows["truncated.jpg"]["ingest_error"].startswith("corrupt")
    assert rows["corrupt.png"]["ingest_error"].split(":")[0] in ("corrupt", "not_an_image")
    assert rows["bomb.png"]["ingest_error"].startswith("too_large")
    assert rows["huge_side.png"]["ingest_error"].startswith("too_large")
    for row in rows.values():
        assert row["image_bytes"] is None and row["ingest_dropped_by"] == "ingest"
        assert len(row["id"]) == 64  # sha256 of the bytes, even for bad files


def test_odd_modes_are_kept_with_original_bytes():
    items = [SourceItem("folder:x", name, data) for name, data in odd_modes().items()]
    rows = _ingest(items)
    assert [r["ingest_error"] for r in rows] == [None] * len(items)
    assert {r["original_mode"] for r in rows} >= {"CMYK", "RGBA", "P"}
    for row, item in zip(rows, items):
        assert row["image_bytes"] == item.data and row["id"] == hashlib.sha256(item.data).hexdigest()
        assert (row["width"], row["height"]) == (24, 16)


def test_seq_shard_label_metadata_and_missing_bytes():
    items = [SourceItem("hf:x", "train/0", jpeg(1), "awe", {"artist": "goya"}),
             SourceItem("urls:l.txt", "http://127.0.0.1/a.jpg", None, error="http_error: 404 Not Found", dropped_by="fetch")]
    rows = _ingest(items)
    assert [r["seq"] for r in rows] == [10, 11] and {r["shard"] for r in rows} == {3}
    assert rows[0]["label"] == "awe" and rows[0]["metadata"] == '{"artist": "goya"}'
    assert rows[1]["id"] == missing_id("urls:l.txt", "http://127.0.0.1/a.jpg") and rows[1]["id"].startswith("nodata-")
    assert rows[1]["ingest_dropped_by"] == "fetch" and rows[1]["ingest_error"] == "http_error: 404 Not Found"


def test_max_pixels_from_recipe():
    rows = ingest_shard([SourceItem("folder:x", "a", jpeg(1, (24, 16)))], 0, 0, max_pixels=100, max_side=1000).to_pylist()
    assert rows[0]["ingest_error"].startswith("too_large")


def test_threaded_decoding_gives_the_same_table():
    items = [SourceItem("folder:x", n, d) for n, d in {**bad_files(), **odd_modes(), "a.jpg": jpeg(1)}.items()]
    one = ingest_shard(items, 0, 0, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, workers=1)
    assert ingest_shard(items, 0, 0, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, workers=4).equals(one)
