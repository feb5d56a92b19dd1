"""Fixtures for emotrain tests: a tiny emotion-captioned dataset built in code (no curation pipeline needed)."""

import io

import numpy as np
import pytest
from PIL import Image

@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: one intra-op thread is many times faster than two under contention."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def feature_cache_in_tmp(tmp_path_factory):
    """Training runs cache encoder outputs (data.cache=auto): under a session folder, never the user's ~/.cache."""
    import os

    before = os.environ.get("EMOTRAIN_CACHE")
    os.environ["EMOTRAIN_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if before is None:
        os.environ.pop("EMOTRAIN_CACHE", None)
    else:
        os.environ["EMOTRAIN_CACHE"] = before


EMOTIONS4 = ["amusement", "awe", "anger", "sadness"]


def png_bytes(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    array = np.clip(base + rng.integers(-40, 40, size=(size, size + 8, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_rows(n: int = 24, emotions=EMOTIONS4, counts=None):
    """Rows with image bytes, string emotions (imbalanced when `counts` is given) and captions."""
    labels = []
    for i, e in enumerate(emotions):
        labels += [e] * (counts[i] if counts else n // len(emotions))
    return {
        "image": [{"bytes": png_bytes(i), "path": None} for i in range(len(labels))],
        "emotion": labels,
        "caption": [f"a photo that evokes {e}, number {i}" for i, e in enumerate(labels)],
    }


def save_dataset(rows, folder, class_label=False):
    import datasets

    features = datasets.Features({
        "image": datasets.Image(),
        "emotion": datasets.ClassLabel(names=sorted(set(rows["emotion"]))) if class_label else datasets.Value("string"),
        "caption": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict(rows, features=features)
    ds.save_to_disk(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def make_dataset():
    """`make_dataset(folder, class_label=False, edit=None, **rows_kwargs)`: rows built by make_rows, edited, saved."""

    def build(folder, class_label=False, edit=None, **kwargs):
        rows = make_rows(**kwargs)
        if edit:
            edit(rows)
        return save_dataset(rows, folder, class_label)

    return build


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A save_to_disk folder: 24 images, 4 emotions (8/6/6/4 rows), string labels."""
    return save_dataset(make_rows(counts=[8, 6, 6, 4]), tmp_path_factory.mktemp("ds") / "tiny")


TINY_OVERRIDES = [
    "model.pretrained=tiny:sd", "model.clip=tiny:clip", "data.resolution=32", "conditioning.mapper_hidden=16",
    "conditioning.d0=24", "optim.batch_size=2", "run.report_to=none", "run.validate_every=0",
    "run.samples_per_emotion=0", "run.inference_steps=2", "run.checkpoint_every=1", "run.keep_checkpoints=2",
]


def _tiny_recipe(*overrides):
    from emotrain.recipe import load_recipe

    return load_recipe(None, [*TINY_OVERRIDES, *overrides])


@pytest.fixture(scope="session")
def tiny_recipe():
    """`tiny_recipe(*overrides)`: the paper's recipe shrunk to tiny models (d0 24 != text width 32 exercises the
    encoder's output projection), no validation grids or samples, a checkpoint every step, the last 2 kept."""
    return _tiny_recipe


@pytest.fixture(scope="session")
def tiny_overrides():
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_dataset):
    """A 4-step tiny run with samples and a validation grid: the model generate/export/CLI tests load."""
    from emotrain.train import train

    out = tmp_path_factory.mktemp("runs") / "run"
    train(_tiny_recipe("run.samples_per_emotion=2", "run.validate_every=4", "optim.max_steps=4"), tiny_dataset, out)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weight files in the real formats (clean-fid Inception, torchvision AlexNet, CSAIL Places365)."""
    from tests.helpers.eval_weights import write_alexnet, write_places, write_tiny_inception

    root = tmp_path_factory.mktemp("weights")
    return {
        "inception": write_tiny_inception(root / "inception.pt"),
        "alexnet": write_alexnet(root / "alexnet.pth"),
        "places": write_places(root / "places.pth.tar"),
    }
