import numpy as np
import pytest
from PIL import Image

from emocurate.stages.clip_filter import ClipFilterConfig, bottom_fraction_mask, load_scorer


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(ClipFilterConfig(model="tiny:clip", device="cpu", batch_size=3))


def test_scores_are_cosines_of_unit_embeddings(scorer):
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue", "white")]
    texts = ["a red square", "a green field", "blue", "snow " * 50]
    scores = scorer.score(images, texts)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert np.all(np.abs(scores) <= 1.0 + 1e-5)
    # the same pair scores the same whatever its batch neighbours
    assert scorer.score(images[1:2], texts[1:2])[0] == pytest.approx(scores[1], abs=1e-5)
    # different texts give different scores for one image
    again = scorer.score([images[0]] * 2, ["a red square", "a completely different caption"])
    assert again[0] == pytest.approx(scores[0], abs=1e-5) and abs(again[0] - again[1]) > 1e-4
    assert scorer.model_id == "tiny:clip" and scorer.backend == "transformers" and scorer.revision is None


def test_long_texts_truncated_for_scoring_but_counted_in_full(scorer):
    short, long = "a calm lake", "a calm lake " + "with many tiny ripples " * 20
    counts = scorer.count_tokens([short, long])
    # the tiny tokenizer is byte-level: one token per character (+ "</w>" pieces), plus BOS and EOS
    assert counts[0] == len(short.replace(" ", "")) + 2
    assert counts[1] > 77 >= counts[0]
    assert scorer.max_tokens == 77
    # truncation: two texts that share their first 77 tokens score identically
    image = [Image.new("RGB", (32, 32), "gray")]
    a = scorer.score(image, ["x" * 200])[0]
    b = scorer.score(image, ["x" * 200 + "y" * 50])[0]
    assert a == pytest.approx(b, abs=1e-6)


def test_score_input_errors(scorer):
    with pytest.raises(ValueError, match="one text per image"):
        scorer.score([Image.new("RGB", (8, 8))], [])
    with pytest.raises(ValueError, match="caption string"):
        scorer.score([Image.new("RGB", (8, 8))], [None])
    assert scorer.score([], []).shape == (0,)


def test_bottom_fraction_per_group_hand_computed():
    ids = [f"id{i}" for i in range(12)]
    groups = ["fear"] * 5 + ["awe"] * 7
    scores = np.array([0.30, 0.10, 0.20, 0.25, 0.40,      # fear: n=5, floor(0.4*5)=2 -> drop 0.10 (id1), 0.20 (id2)
                       0.50, 0.20, 0.20, 0.90, 0.10, 0.60, 0.70])  # awe: n=7, floor(2.8)=2 -> 0.10 (id9), 0.20 tie: id6 < id7
    mask = bottom_fraction_mask(scores, groups, 0.4, ids)
    expected = np.zeros(12, bool)
    expected[[1, 2, 9, 6]] = True
    assert mask.tolist() == expected.tolist()
    # the tie breaks by id, not by position
    swapped = ids[:6] + ["id7", "id6"] + ids[8:]
    mask = bottom_fraction_mask(scores, groups, 0.4, swapped)  # now position 7 has the smaller id
    assert mask[7] and not mask[6]


def test_bottom_fraction_exact_and_zero():
    scores = np.arange(10, dtype=float)
    mask = bottom_fraction_mask(scores, ["a"] * 10, 0.2, [str(i) for i in range(10)])
    assert mask.tolist() == [True, True] + [False] * 8  # 0.2 * 10 is 2, not 1.999...
    assert not bottom_fraction_mask(scores, ["a"] * 10, 0.0, [str(i) for i in range(10)]).any()
    assert bottom_fraction_mask(np.zeros(0), [], 0.2, []).shape == (0,)


def test_nan_scores_always_dropped_and_do_not_count():
    scores = np.array([np.nan, 0.5, 0.1, 0.9, 0.3, 0.7])
    mask = bottom_fraction_mask(scores, ["a"] * 6, 0.2, list("abcdef"))
    # 5 finite scores -> floor(1.0) = 1 drop (0.1); the NaN is dropped on top of that
    assert mask.tolist() == [True, False, True, False, False, False]


def test_bottom_fraction_validation():
    with pytest.raises(ValueError, match="one entry per record"):
        bottom_fraction_mask(np.zeros(3), ["a"] * 2, 0.2, ["1", "2", "3"])
    with pytest.raises(ValueError, match=r"drop_fraction must be in \[0, 1\); got 1.0"):
        bottom_fraction_mask(np.zeros(1), ["a"], 1.0, ["1"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(drop_fraction=3.2), r"clip_filter.drop_fraction must be in \[0, 1\); got 3.2"),
    (dict(drop_fraction=-0.1), r"drop_fraction must be in \[0, 1\)"),
    (dict(batch_size=0), "clip_filter.batch_size must be an integer >= 1"),
    (dict(device="gpu"), "clip_filter.device must be"),
    (dict(backend="siglip"), "clip_filter.backend must be one of"),
    (dict(backend="open_clip"), "looks like a transformers id"),
    (dict(backend="open_clip", model="ViT-L-14"), "needs clip_filter.pretrained"),
    (dict(pretrained="openai"), "applies to the open_clip backend"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClipFilterConfig(**kwargs)


def test_config_from_recipe_yaml(tmp_path):
    from emocurate.core.config import ConfigError, load

    recipe = tmp_path / "r.yaml"
    recipe.write_text("drop_fraction: 0.3\nmodel: tiny:clip\n")
    assert load(ClipFilterConfig, recipe).drop_fraction == 0.3
    with pytest.raises(ConfigError, match="got 3.2"):
        load(ClipFilterConfig, recipe, ["drop_fraction=3.2"])


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A tiny open_clip architecture registered at runtime, random weights saved as a local checkpoint (no download)."""
    import json

    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("open_clip")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    }
    (folder / "tiny-test-ViT.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / "tiny-test-ViT.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-ViT", pretrained=None)
    torch.save(model.state_dict(), folder / "tiny.pt")
    return str(folder / "tiny.pt")


def test_open_clip_backend(tiny_open_clip):
    import open_clip
    import torch

    scorer = load_scorer(ClipFilterConfig(backend="open_clip", model="tiny-test-ViT", pretrained=tiny_open_clip, device="cpu",
                                          batch_size=2))
    assert scorer.backend == "open_clip" and scorer.model_id == "tiny-test-ViT" and scorer.revision == tiny_open_clip
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "green", "blue")]
    texts = ["a red square", "a green field", "a calm " * 60]
    scores = scorer.score(images, texts)
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1 + 1e-5)

    # the same numbers straight from open_clip: the checkpoint was really loaded
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-test-ViT", pretrained=tiny_open_clip)
    tokenizer = open_clip.get_tokenizer("tiny-test-ViT")
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.eval().encode_image(torch.stack([preprocess(im) for im in images])), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    np.testing.assert_allclose(scores, (img * txt).sum(-1).numpy(), atol=1e-5)

    counts = scorer.count_tokens(["a red square", "a calm " * 60])
    assert counts[0] == 5 and counts[1] == 122 and scorer.max_tokens == 77
