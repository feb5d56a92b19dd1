import numpy as np
import pytest
from PIL import Image

from emotrain.generate import file_stem, generate, load_run, parse_mix, transfer_prompt


@pytest.fixture(scope="module")
def sampler(trained_run):
    return load_run(trained_run, device="cpu")


def _pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_generate_writes_images_and_grid_and_resumes(tmp_path, trained_run, sampler):
    kw = dict(steps=2, guidance=3.0, batch_size=2, sampler=sampler)
    paths = generate(trained_run, "awe", 3, 0, tmp_path / "a", **kw)
    assert [p.name for p in paths] == ["awe_s0_00000.png", "awe_s0_00001.png", "awe_s0_00002.png"]
    assert all(p.is_file() for p in paths) and (tmp_path / "a" / "grids" / "awe_s0.png").is_file()
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == [p.name for p in paths]  # only images at top level
    assert Image.open(paths[0]).size == (32, 32)
    assert np.abs(_pixels(paths[0]) - _pixels(paths[1])).sum() > 0  # per-index seeds differ
    before = paths[0].stat().st_mtime_ns
    calls = []
    more = generate(trained_run, "awe", 4, 0, tmp_path / "a", progress=lambda d, t: calls.append((d, t)), **kw)
    assert paths[0].stat().st_mtime_ns == before and calls[0] == (3, 4) and calls[-1] == (4, 4)
    fresh = generate(trained_run, "awe", 4, 0, tmp_path / "b", **kw)
    assert np.array_equal(_pixels(more[3]), _pixels(fresh[3]))  # index 3 is the same whether resumed or not


def test_transfer_and_fusion(tmp_path, trained_run, sampler):
    kw = dict(steps=2, guidance=3.0, sampler=sampler)
    plain = generate(trained_run, "amusement", 1, 0, tmp_path, **kw)[0]
    moved = generate(trained_run, "amusement", 1, 0, tmp_path, prompt="a city street", **kw)[0]
    fused = generate(trained_run, {"amusement": 0.5, "anger": 0.5}, 1, 0, tmp_path, **kw)[0]
    assert moved.name == "amusement_a-city-street_s0_00000.png" and fused.name == "amusement-0.5+anger-0.5_s0_00000.png"
    assert np.abs(_pixels(plain) - _pixels(moved)).sum() > 0
    assert np.abs(_pixels(plain) - _pixels(fused)).sum() > 0
    with pytest.raises(ValueError, match="not in this model"):
        generate(trained_run, "disgust", 1, 0, tmp_path, **kw)


def test_fusion_vectors_are_the_weighted_mix(sampler):
    import torch

    one = sampler.emotion_vectors([{"awe": 1.0}], [5])
    other = sampler.emotion_vectors([{"sadness": 1.0}], [5])
    mixed = sampler.emotion_vectors([{"awe": 0.25, "sadness": 0.75}], [5])
    torch.testing.assert_close(mixed, 0.25 * one + 0.75 * other)


def test_small_helpers():
    assert parse_mix("amusement:0.5, awe:0.5") == {"amusement": 0.5, "awe": 0.5}
    with pytest.raises(ValueError, match="emotion:weight"):
        parse_mix("awe:lots")
    assert transfer_prompt("a city street") == "a city street, <emotion>"
    assert transfer_prompt("<emotion> over a lake") == "<emotion> over a lake"
    assert file_stem("awe", 3, None) == "awe_s3"


def test_scheduler_is_chosen_by_name(tmp_path, trained_run, sampler):
    kw = dict(steps=2, guidance=3.0, sampler=sampler)
    assert sampler.scheduler == "dpm-solver++" and type(sampler.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    dpm = generate(trained_run, "awe", 1, 0, tmp_path / "dpm", **kw)[0]
    ddim = generate(trained_run, "awe", 1, 0, tmp_path / "ddim", scheduler="ddim", **kw)[0]
    assert type(sampler.pipe.scheduler).__name__ == "DDIMScheduler"
    assert np.abs(_pixels(dpm) - _pixels(ddim)).sum() > 0
    again = generate(trained_run, "awe", 1, 0, tmp_path / "again", scheduler="dpm-solver++", **kw)[0]
    assert np.array_equal(_pixels(again), _pixels(dpm))
    with pytest.raises(ValueError, match="unknown scheduler 'plms'; choose one of dpm-solver\\+\\+, ddim"):
        generate(trained_run, "awe", 1, 0, tmp_path / "x", scheduler="plms", **kw)
