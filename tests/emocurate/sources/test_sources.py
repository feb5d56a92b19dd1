import json

import pytest

from emocurate.core.decode import decode_image
from emocurate.sources import iter_items, parse_spec, SourceSpec
from emocurate.sources.folder import iter_folder
from tests.helpers.emoset import make_emoset
from tests.helpers.images import jpeg


def test_parse_spec():
    assert parse_spec("folder:/data/x") == SourceSpec("folder", "/data/x")
    assert parse_spec("hf:huggan/wikiart:train") == SourceSpec("hf", "huggan/wikiart", "train")
    assert parse_spec("hf:/data/saved") == SourceSpec("hf", "/data/saved")
    assert parse_spec("wikiart") == SourceSpec("hf", "huggan/wikiart", "train")
    assert parse_spec("wikiart:/local/copy") == SourceSpec("hf", "/local/copy", "train")
    assert parse_spec("emoset:/data/EmoSet-118K:val") == SourceSpec("emoset", "/data/EmoSet-118K", "val")
    assert parse_spec("demo").kind == "demo"
    with pytest.raises(ValueError, match="unknown source 'ftp:x'"):
        parse_spec("ftp:x")
    with pytest.raises(ValueError, match="needs a target"):
        parse_spec("folder:")


def test_folder_labels_order_and_bad_files(image_folder):
    items = list(iter_folder(str(image_folder), "folder:x"))
    ids = [i.source_id for i in items]
    assert ids == sorted(ids) and ".hidden.jpg" not in ids
    by_id = {i.source_id: i for i in items}
    assert by_id["amusement/a1.jpg"].label == "amusement"
    assert by_id["Fear/f1.jpg"].label == "fear"  # case-insensitive emotion folder
    assert by_id["misc/deeper/x3.jpg"].label is None and by_id["top.jpg"].label is None
    assert by_id["bad/empty.jpg"].data == b"" and by_id["bad/text_named.jpg"].data.startswith(b"just")
    assert len(items) == 8 + 5 + 6


def test_folder_missing_is_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        list(iter_items([f"folder:{tmp_path / 'nope'}"], tmp_path))


def test_limit_spans_sources(image_folder, tmp_path):
    items = list(iter_items([f"folder:{image_folder}/amusement", f"folder:{image_folder}/misc"], tmp_path, limit=3))
    assert [i.source_id for i in items] == ["a1.jpg", "a2.jpg", "copy_of_a1.jpg"]
    assert items[2].source == f"folder:{image_folder}/misc"


def _hf_dataset(n=5):
    from datasets import ClassLabel, Dataset, Features, Image, Value

    features = Features({"image": Image(), "emotion": ClassLabel(names=["amusement", "awe", "fear"]),
                         "artist": ClassLabel(names=["monet", "goya"]), "title": Value("string"), "year": Value("int32")})
    return Dataset.from_dict({
        "image": [{"bytes": jpeg(i), "path": None} for i in range(n)],
        "emotion": [i % 3 for i in range(n)], "artist": [i % 2 for i in range(n)],
        "title": [f"t{i}" for i in range(n)], "year": [1800 + i for i in range(n)],
    }, features=features)


def test_hf_save_to_disk(tmp_path):
    from datasets import DatasetDict

    DatasetDict({"train": _hf_dataset(), "test": _hf_dataset(2)}).save_to_disk(tmp_path / "ds")
    items = list(iter_items([f"hf:{tmp_path / 'ds'}"], tmp_path))
    assert len(items) == 5 and items[0].source_id == "train/0"
    assert items[1].data == jpeg(1)  # original bytes, not re-encoded
    assert [i.label for i in items[:3]] == ["amusement", "awe", "fear"]
    assert items[1].metadata == {"artist": "goya", "title": "t1", "year": "1801"}
    test_items = list(iter_items([f"hf:{tmp_path / 'ds'}:test"], tmp_path))
    assert [i.source_id for i in test_items] == ["test/0", "test/1"]
    with pytest.raises(ValueError, match="no split 'val'"):
        list(iter_items([f"hf:{tmp_path / 'ds'}:val"], tmp_path))


def test_hf_parquet_folder_streamed_with_limit(tmp_path):
    folder = tmp_path / "pq" / "data"
    folder.mkdir(parents=True)
    _hf_dataset(6).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    items = list(iter_items([f"hf:{tmp_path / 'pq'}"], tmp_path, limit=4))
    assert len(items) == 4
    one_file = list(iter_items([f"hf:{folder / 'train-00000-of-00001.parquet'}"], tmp_path))
    assert [i.data for i in one_file] == [jpeg(i) for i in range(6)] and one_file[1].metadata["artist"] == "goya"
    assert decode_image(items[3].data).image is not None
    assert items[3].metadata["artist"] == "goya" and items[3].label == "amusement"


def test_wikiart_keeps_artist_genre_style_names(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image

    features = Features({"image": Image(), "artist": ClassLabel(names=["claude-monet", "vincent-van-gogh"]),
                         "genre": ClassLabel(names=["landscape", "portrait"]),
                         "style": ClassLabel(names=["Impressionism", "Post_Impressionism"])})
    ds = Dataset.from_dict({"image": [{"bytes": jpeg(i), "path": None} for i in range(3)],
                            "artist": [0, 1, 1], "genre": [1, 0, 1], "style": [0, 1, 1]}, features=features)
    (tmp_path / "wikiart" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "wikiart" / "data" / "train-00000-of-00001.parquet"))
    items = list(iter_items([f"wikiart:{tmp_path / 'wikiart'}"], tmp_path))
    assert [i.metadata for i in items][1] == {"artist": "vincent-van-gogh", "genre": "landscape", "style": "Post_Impressionism"}
    assert all(i.label is None for i in items)


def test_emoset_layout(tmp_path):
    root = make_emoset(tmp_path / "EmoSet-118K")
    (root / "annotation/amusement/amusement_00000.json").unlink()
    (root / "image/awe/awe_00001.jpg").unlink()
    items = list(iter_items([f"emoset:{root}"], tmp_path))
    assert len(items) == 6
    assert [i.metadata["split"] for i in items] == ["train"] * 3 + ["val"] * 2 + ["test"]
    assert items[2].label == "sadness" and items[2].metadata["object"] == "person, dog"
    assert items[2].metadata["scene"] == "beach" and items[2].metadata["emoset_id"] == "sadness_00002"
    assert "annotation unreadable" in items[0].metadata["annotation_error"] and items[0].data  # image still read
    assert items[1].data is None and items[1].error.startswith("read_error")
    assert len(list(iter_items([f"emoset:{root}:val"], tmp_path))) == 2
    with pytest.raises(FileNotFoundError, match="official EmoSet-118K layout"):
        list(iter_items([f"emoset:{tmp_path}"], tmp_path))


def test_demo_source_writes_real_photos_and_bad_files(tmp_path):
    items = list(iter_items(["demo"], tmp_path))
    assert len(items) == 51 and (tmp_path / "demo_images" / ".complete").exists()
    by_id = {i.source_id: i for i in items}
    assert by_id["amusement/astronaut.jpg"].label == "amusement" and by_id["unlabelled/camera.jpg"].label is None
    assert by_id["bad/empty.jpg"].data == b"" and by_id["unlabelled/astronaut_copy.jpg"].data == by_id["amusement/astronaut.jpg"].data
    assert sum(decode_image(i.data).image is not None for i in items) == 47


def test_hf_imagefolder_labels_from_emotion_dirs(tmp_path):
    for i, emotion in enumerate(["awe", "fear", "awe"]):
        (tmp_path / "imgs" / "train" / emotion).mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / "train" / emotion / f"{i}.jpg").write_bytes(jpeg(40 + i))
    items = list(iter_items([f"hf:{tmp_path / 'imgs'}"], tmp_path))
    assert sorted(i.label for i in items) == ["awe", "awe", "fear"]
    assert sorted(i.data for i in items) == sorted(jpeg(40 + i) for i in range(3))
