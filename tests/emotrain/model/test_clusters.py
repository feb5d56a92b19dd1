import pytest
import torch

from emotrain.model.clusters import ClusterAccumulator, EmotionClusters


def _accumulate(full=False):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, 4, generator=gen) * 2 + 5  # awe: mean 5, std 2
    b = torch.randn(30, 3, 4, generator=gen) - 1  # fear: mean -1, std 1
    acc = ClusterAccumulator(["awe", "fear"], full_covariance=full)
    for i in range(0, 50, 10):  # streamed in mixed batches
        acc.add(torch.cat([a[i:i + 10], b[i // 10 * 6:i // 10 * 6 + 6]]), ["awe"] * 10 + ["fear"] * 6)
    return acc.finish(), a, b


def test_statistics_match_the_data():
    clusters, a, b = _accumulate()
    assert clusters.count == {"awe": 50, "fear": 30}
    torch.testing.assert_close(clusters.mean["awe"], a.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clusters.std["fear"], b.std(0), atol=1e-5, rtol=1e-5)


def test_save_load_and_seeded_sampling(tmp_path):
    clusters, _, _ = _accumulate()
    clusters.save(tmp_path / "c.safetensors")
    again = EmotionClusters.load(tmp_path / "c.safetensors")
    assert again.emotions == ["awe", "fear"] and again.count == clusters.count
    draw = lambda s: again.sample("awe", 4, generator=torch.Generator().manual_seed(s))  # noqa: E731
    assert draw(1).shape == (4, 3, 4) and torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    many = again.sample("fear", 4000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(many.mean(0), again.mean["fear"], atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="no cluster for emotion 'joy'"):
        again.sample("joy")


def test_full_covariance(tmp_path):
    clusters, a, _ = _accumulate(full=True)
    flat = a.flatten(1).double()
    torch.testing.assert_close(clusters.covariance["awe"].double(), torch.cov(flat.T), atol=1e-4, rtol=1e-4)
    clusters.save(tmp_path / "c.safetensors")
    again = EmotionClusters.load(tmp_path / "c.safetensors")
    assert again.sample("awe", 2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 4)


def test_missing_emotion_and_too_large_covariance():
    acc = ClusterAccumulator(["awe", "fear"])
    acc.add(torch.zeros(2, 1, 2), ["awe", "awe"])
    with pytest.raises(ValueError, match=r"no images for emotion\(s\) \['fear'\]"):
        acc.finish()
    with pytest.raises(ValueError, match="too large"):
        ClusterAccumulator(["awe"], full_covariance=True).add(torch.zeros(1, 257, 1024), ["awe"])
