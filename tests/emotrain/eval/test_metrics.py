"""Metric functions on tiny random backbones built in code, with known answers."""

import numpy as np
import pytest
import torch

from emotrain.eval.metrics import fid, lpips_diversity, semantic_clarity
from emotrain.eval.metrics.clip_features import image_embeddings, load_clip, text_embeddings
from emotrain.eval.metrics.clip_score import clip_scores
from emotrain.eval.metrics.emotion_accuracy import emotion_accuracy
from emotrain.eval.metrics.images import list_images
from emotrain.eval.metrics.pairs import sample_pairs
from emotrain.eval.metrics.semantic_diversity import semantic_diversity

from tests.helpers.eval_weights import noise_images


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    noise_images(root / "a", 12, seed=1)
    noise_images(root / "b", 10, seed=2, size=32)
    return root


def test_pairs_are_distinct_ordered_and_reproducible():
    pairs = sample_pairs(10, 20, seed=3)
    assert pairs.shape == (20, 2)
    assert (pairs[:, 0] < pairs[:, 1]).all() and pairs.max() < 10
    assert len({tuple(p) for p in pairs}) == 20
    assert (sample_pairs(10, 20, seed=3) == pairs).all()
    assert not (sample_pairs(10, 20, seed=4) == pairs).all()
    every = sample_pairs(5, 100, seed=0)  # more asked than exist: all 10 pairs
    assert sorted(map(tuple, every)) == [(i, j) for i in range(5) for j in range(i + 1, 5)]
    with pytest.raises(ValueError, match="at least 2 images"):
        sample_pairs(1, 5, seed=0)


def test_fid_identical_sets_is_zero_and_matches_clean_fid(weights, folders):
    from cleanfid.fid import compute_fid

    extractor = fid.load_inception(weights["inception"], "cpu")
    a = fid.features(list_images(folders / "a"), extractor, batch_size=5)
    b = fid.features(list_images(folders / "b"), extractor, batch_size=5)
    assert a.shape == (12, 32)
    assert abs(fid.frechet_distance(fid.stats_of(a), fid.stats_of(a))) < 1e-3
    ours = fid.frechet_distance(fid.stats_of(a), fid.stats_of(b))
    assert ours > 1e-3
    # clean-fid's own pipeline ("clean" mode) with the same extractor gives the same number
    reference = compute_fid(str(folders / "a"), str(folders / "b"), mode="clean", custom_feat_extractor=extractor,
                            num_workers=0, batch_size=8, device=torch.device("cpu"), verbose=False)
    assert ours == pytest.approx(reference, rel=1e-4)


@pytest.mark.parametrize("n1, n2, dim", [(40, 60, 8), (5, 7, 16)])  # full-rank and rank-deficient covariances
def test_frechet_distance_equals_clean_fid(n1, n2, dim):
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    rng = np.random.default_rng(n1)
    a, b = fid.stats_of(rng.normal(size=(n1, dim))), fid.stats_of(rng.normal(0.3, 1.5, size=(n2, dim)))
    assert (a.feats is not None) == (n1 <= dim)  # the N x N route for few images, the D x D one otherwise
    reference = cleanfid_frechet(a.mu, a.sigma, b.mu, b.sigma)
    assert fid.frechet_distance(a, b) == pytest.approx(reference, rel=1e-5)
    a.feats = None
    assert fid.frechet_distance(a, b) == pytest.approx(reference, rel=1e-5)


def test_pooled_stats_equal_stats_of_the_union():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 4)), rng.normal(2, 3, size=(11, 4))
    pooled, direct = fid.pool([fid.stats_of(x), fid.stats_of(y)]), fid.stats_of(np.concatenate([x, y]))
    assert pooled.n == 18
    np.testing.assert_allclose(pooled.mu, direct.mu)
    np.testing.assert_allclose(pooled.sigma, direct.sigma)


def test_stats_cache_roundtrip(tmp_path):
    cache = fid.StatsCache(tmp_path)
    key = cache.key(dataset="abc", extractor="def", emotion="awe")
    assert cache.get(key) is None
    stats = fid.stats_of(np.random.default_rng(0).normal(size=(5, 3)))
    cache.put(key, stats)
    back = cache.get(key)
    assert back.n == 5 and np.allclose(back.sigma, stats.sigma)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"]


def test_lpips_zero_for_identical_pairs_and_trunk_loaded(weights, folders):
    model = lpips_diversity.load_lpips(weights["alexnet"], "cpu")
    saved = torch.load(weights["alexnet"])
    assert torch.equal(model.net.slice1[0].weight, saved["features.0.weight"])
    assert torch.equal(getattr(model.net.slice5, "10").weight, saved["features.10.weight"])
    import lpips
    from pathlib import Path

    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu")
    assert torch.equal(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    items = list_images(folders / "a")
    same = lpips_diversity.lpips_distances(items, np.array([[0, 0], [3, 3]]), model)
    assert np.allclose(same, 0.0, atol=1e-7)
    pairs = sample_pairs(len(items), 8, seed=0)
    d = lpips_diversity.lpips_distances(items, pairs, model, batch_size=3)
    assert d.shape == (8,) and (d > 0).all()


def test_lpips_input_is_minus_one_to_one():
    from PIL import Image

    x = lpips_diversity.to_lpips_input([Image.new("RGB", (4, 4), (0, 0, 0)), Image.new("RGB", (4, 4), (255, 255, 255))], None)
    assert x.shape == (2, 3, 4, 4) and x.min() == -1.0 and x.max() == 1.0
    with pytest.raises(ValueError, match="lpips.image_size"):
        lpips_diversity.to_lpips_input([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4))], None)


@pytest.mark.parametrize("loader, option", [
    (lambda: fid.load_inception(None, "cpu"), "fid.inception=PATH"),
    (lambda: fid.load_inception("/nonexistent/inception.pt", "cpu"), "fid.inception=/nonexistent"),
    (lambda: lpips_diversity.load_lpips(None, "cpu"), "lpips.alexnet=PATH"),
    (lambda: semantic_clarity.load_places365(None, "resnet50", "cpu"), "sem_c.places365=PATH"),
    (lambda: semantic_clarity.load_places365("/nonexistent.pth.tar", "resnet50", "cpu"), "sem_c.places365=/nonexistent"),
])
def test_missing_weights_name_the_option(loader, option):
    with pytest.raises(FileNotFoundError, match=option.replace(".", r"\.")):
        loader()


def test_places365_checkpoint_with_module_prefix_loads(weights, folders):
    import torchvision

    places = semantic_clarity.load_places365(weights["places"], "resnet18", "cpu", image_size=32)
    reference = torchvision.models.resnet18(weights=None, num_classes=365)
    state = torch.load(weights["places"])["state_dict"]
    reference.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    assert torch.equal(places.model.fc.weight, reference.fc.weight)
    top = semantic_clarity.top_softmax(list_images(folders / "a"), places, batch_size=5)
    assert top.shape == (12,) and (top > 1 / 365).all() and (top <= 1).all()
    with pytest.raises(ValueError, match="sem_c.places_arch"):
        semantic_clarity.load_places365(weights["places"], "resnet50", "cpu")


def test_semantic_clarity_takes_the_larger_of_the_two_per_image(folders):
    assert semantic_clarity.semantic_clarity(np.array([0.9, 0.1, 0.5]), np.array([0.2, 0.6, 0.5])) == pytest.approx(2.0 / 3)
    imagenet = semantic_clarity.load_imagenet("tiny:resnet", None, "cpu")
    top = semantic_clarity.top_softmax(list_images(folders / "b"), imagenet, batch_size=4)
    assert top.shape == (10,) and (top >= 0.1).all()  # 10 classes: the top probability is at least 1/10


def test_semantic_diversity_known_answers():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    out = semantic_diversity(emb, np.array([[0, 1]]))
    assert out["mse"] == pytest.approx((1 + 4) / 2) and out["one_minus_cos"] == pytest.approx(1.0)
    same = semantic_diversity(emb, np.array([[0, 2]]))
    assert same == {"mse": 0.0, "one_minus_cos": pytest.approx(0.0)}


def test_clip_embeddings_and_score(folders):
    clip = load_clip("tiny:clip", None, "cpu")
    img = image_embeddings(list_images(folders / "a"), clip, batch_size=5)
    txt = text_embeddings(["an image of awe", "x" * 300], clip)  # the long one is truncated, not an error
    assert img.shape == (12, 32) and txt.shape == (2, 32)
    scores = clip_scores(img, txt)
    assert scores.shape == (12,) and (scores >= 0).all() and (scores <= 100).all()
    assert clip_scores(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [-1.0, 0.0]]))[0] == pytest.approx(50.0)


def test_emotion_accuracy_known_answers():
    emotions = ["amusement", "awe", "anger", "sadness"]
    probs = np.array([
        [0.7, 0.1, 0.1, 0.1],  # right
        [0.1, 0.6, 0.2, 0.1],  # wrong emotion, right polarity
        [0.1, 0.1, 0.1, 0.7],  # wrong polarity
        [0.4, 0.0, 0.6, 0.0],  # wrong polarity
    ])
    out = emotion_accuracy(probs, emotions, "amusement")
    assert out == {"accuracy": 0.25, "polarity_accuracy": 0.5, "target_prob": pytest.approx(1.3 / 4)}
    with pytest.raises(ValueError, match="does not know 'fear'"):
        emotion_accuracy(probs, emotions, "fear")
