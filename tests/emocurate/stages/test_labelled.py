import pytest

from emocurate.stages.labelled import labelled_dataset
from tests.helpers.emoset import make_emoset


def test_emoset_as_training_dataset(tmp_path):
    root = make_emoset(tmp_path / "EmoSet-118K", (4, 2, 0))
    train = labelled_dataset(f"emoset:{root}", "train")
    assert len(train) == 4
    names = train.features["emotion"].names
    assert [names[i] for i in train["emotion"]] == ["amusement", "awe", "sadness", "amusement"]
    assert train[0]["image"].size == (24, 16)
    assert len(labelled_dataset(f"emoset:{root}", "val")) == 2


def test_folder_without_emotion_dirs_is_clear(image_folder):
    ds = labelled_dataset(f"folder:{image_folder}", None)
    assert sorted(ds["source_id"]) == ["Fear/f1.jpg", "amusement/a1.jpg", "amusement/a2.jpg"]
    with pytest.raises(ValueError, match="no labelled, decodable images"):
        labelled_dataset(f"folder:{image_folder / 'misc'}", None)
