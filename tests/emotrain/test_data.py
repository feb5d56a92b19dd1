import pytest

from emotrain.data import DatasetError, ResumableSampler, load_training_dataset, oversample, validate
from emotrain.recipe import DataConfig


def test_validate_accepts_string_and_classlabel(tmp_path, tiny_dataset, make_dataset):
    v = validate(load_training_dataset(tiny_dataset), DataConfig())
    assert v.emotions == ["amusement", "awe", "anger", "sadness"]
    path = make_dataset(tmp_path / "cl", class_label=True)
    v2 = validate(load_training_dataset(path), DataConfig())
    assert sorted(set(v2.labels)) == ["amusement", "anger", "awe", "sadness"]


def test_missing_column_names_what_exists(tiny_dataset):
    with pytest.raises(DatasetError, match=r"missing caption column 'text'.*has columns: image, emotion, caption"):
        validate(load_training_dataset(tiny_dataset), DataConfig(caption_column="text"))


def test_every_problem_reported_once_with_counts(tmp_path, make_dataset):
    def edit(rows):
        _break(rows)

    ds = load_training_dataset(make_dataset(tmp_path / "bad", edit=edit, n=12))
    with pytest.raises(DatasetError) as err:
        validate(ds, DataConfig())
    msg = str(err.value)
    assert "6 problem(s) in 12 rows" in msg
    assert "2 labels outside the emotion table" in msg and "'joy'" in msg
    assert "3 empty or missing captions" in msg and "row 2" in msg
    assert "1 undecodable images" in msg and "row 5" in msg


def _break(rows):
    rows["emotion"][0] = "joy"
    rows["emotion"][1] = "happiness"
    rows["caption"][2] = "  "
    rows["caption"][3] = None
    rows["caption"][4] = ""
    rows["image"][5] = {"bytes": b"not an image at all", "path": None}


def test_labels_outside_recipe_emotions(tiny_dataset):
    with pytest.raises(DatasetError, match="6 labels outside the emotion table"):
        validate(load_training_dataset(tiny_dataset), DataConfig(emotions=["amusement", "awe", "sadness"]))


def test_oversampling_balances_and_is_seeded(tiny_dataset):
    v = validate(load_training_dataset(tiny_dataset), DataConfig(), check_images=False)
    idx, before, after = oversample(v.labels, v.emotions, seed=3)
    assert before == {"amusement": 8, "awe": 6, "anger": 6, "sadness": 4}
    assert after == {e: 8 for e in v.emotions} and len(idx) == 32
    assert idx == oversample(v.labels, v.emotions, seed=3)[0]
    assert idx != oversample(v.labels, v.emotions, seed=4)[0]


def test_sampler_resumes_and_shards():
    full = ResumableSampler(range(10), seed=1, batch_size=2, world=2, rank=0)
    it = iter(full)
    first = [next(it) for _ in range(12)]
    resumed = iter(ResumableSampler(range(10), seed=1, batch_size=2, world=2, rank=0, start=8))
    assert [next(resumed) for _ in range(8)] == first[4:]
    other = iter(ResumableSampler(range(10), seed=1, batch_size=2, world=2, rank=1))
    second = [next(other) for _ in range(4)]
    # rank 0 reads positions 0-1, rank 1 positions 2-3 of the same permutation: four distinct rows
    assert len({r for r, _ in first[:2] + second[:2]}) == 4


def test_parquet_folder_and_dataset_dict_and_missing(tmp_path, tiny_dataset):
    import datasets

    ds = load_training_dataset(tiny_dataset)
    (tmp_path / "pq" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))  # the layout of a published dataset
    assert len(validate(load_training_dataset(str(tmp_path / "pq")), DataConfig()).labels) == 24
    datasets.DatasetDict({"train": ds, "test": ds.select(range(4))}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_training_dataset(str(tmp_path / "dd"), "test")) == 4
    with pytest.raises(DatasetError, match="no split 'val'; splits: train, test"):
        load_training_dataset(str(tmp_path / "dd"), "val")
    with pytest.raises(DatasetError, match="neither an existing folder nor a Hub id"):
        load_training_dataset(str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match="'nobody/no-such-dataset' is not a local folder and not in the Hugging Face cache, "
                                           "and HF_HUB_OFFLINE=1 forbids downloading it"):
        load_training_dataset("nobody/no-such-dataset")  # HF_HUB_OFFLINE=1 in tests: fails fast, no traffic
