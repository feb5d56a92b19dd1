"""Real images per emotion from a dataset: string or ClassLabel emotions, seeded subsets, clear errors."""

import pytest
from PIL import Image

from emotrain.eval.config import RealConfig
from emotrain.eval.real import load_real


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("real")
    labels = ["Awe", "fear", "awe", "awe", "fear", "awe"]  # strings, mixed case
    images = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(len(labels))]
    datasets.Dataset.from_dict({"image": images, "emotion": labels}).save_to_disk(str(root / "ds"))
    return str(root / "ds")


def test_rows_by_emotion_subset_and_captions_fallback(real):
    full = load_real(RealConfig(dataset=real), None, seed=0)
    assert full.indices == {"awe": [0, 2, 3, 5], "fear": [1, 4]}
    assert [img.getpixel((0, 0))[0] for img in full.images("fear")[0:2]] == [40, 160]
    texts, source = full.captions("awe", 10, seed=0)
    assert texts == ["an image of awe"] and "no caption column" in source
    part = load_real(RealConfig(dataset=real, max_per_emotion=2), ["awe"], seed=3)
    assert list(part.indices) == ["awe"] and len(part.indices["awe"]) == 2
    assert set(part.indices["awe"]) < {0, 2, 3, 5}
    assert load_real(RealConfig(dataset=real, max_per_emotion=2), ["awe"], seed=3).indices == part.indices


def test_errors_say_what_to_fix(real):
    with pytest.raises(ValueError, match=r"no images of \['sadness'\]"):
        load_real(RealConfig(dataset=real), ["awe", "sadness"], seed=0)
    with pytest.raises(ValueError, match="set real.image_column"):
        load_real(RealConfig(dataset=real, image_column="img"), None, seed=0)
    with pytest.raises(ValueError, match="--real DATASET"):
        load_real(RealConfig(), None, seed=0)
