"""Bootstrap intervals and pairwise significance, with answers known in advance."""

import numpy as np
import pytest

from emotrain.eval.compare import pairwise, render_differences
from emotrain.eval.intervals import difference, fid_replicates, interval, replicates


def test_replicates_aggregate_like_the_metric():
    constant = {"awe": np.full(5, 0.2), "fear": np.full(50, 0.8)}
    pooled = replicates(constant, 100, seed=0, aggregate="pooled")
    by_emotion = replicates(constant, 100, seed=0, aggregate="mean_of_emotions")
    assert np.allclose(pooled, (5 * 0.2 + 50 * 0.8) / 55) and np.allclose(by_emotion, 0.5)  # no spread, exact value
    rng = np.random.default_rng(1)
    values = {"awe": rng.normal(3.0, 1.0, 400)}
    reps = replicates(values, 2000, seed=0, aggregate="pooled")
    low, high = interval(reps)
    assert low < values["awe"].mean() < high
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.2)  # the textbook width of a mean's 95% CI
    assert np.array_equal(reps, replicates(values, 2000, seed=0, aggregate="pooled"))  # seeded


def test_difference_is_significant_only_beyond_the_noise():
    rng = np.random.default_rng(2)
    a = replicates({"awe": rng.normal(0.0, 1.0, 300)}, 1000, 0, "pooled")
    b = replicates({"awe": rng.normal(1.0, 1.0, 300)}, 1000, 0, "pooled")
    c = replicates({"awe": rng.normal(0.02, 1.0, 300)}, 1000, 0, "pooled")
    assert difference(a, b)["significant"] and difference(a, b)["high"] < 0
    assert not difference(a, c)["significant"]
    models = {name: {"overall": {"lpips": float(np.mean(r)), "fid": 10.0 - float(np.mean(r))},
                     "bootstrap": {"lpips": list(r), "fid": list(10.0 - r)}} for name, r in [("A", a), ("B", b), ("C", c)]}
    ab = pairwise(models, "lpips")[0]
    assert (ab["a"], ab["b"], ab["better"]) == ("A", "B", "B")  # higher LPIPS is better
    assert pairwise(models, "fid")[0]["better"] == "B"  # lower FID is better (B: 10 - 1)
    models["B"]["bootstrap"]["fid"] = list(20.0 - b)
    models["B"]["overall"]["fid"] = 20.0 - float(np.mean(b))
    assert pairwise(models, "fid")[0]["better"] == "A"
    text = "\n".join(render_differences(models, [("lpips", "LPIPS↑", "{:.3f}"), ("fid", "FID↓", "{:.2f}")]))
    assert "B is significantly better than A (" in text and "A and C do not differ significantly" in text
    sentence = next(line for line in text.splitlines() if line.startswith("- B is significantly better than A"))
    assert sentence.index(f"{np.mean(b):.3f}") < sentence.index(f"{np.mean(a):.3f}") and "difference +" in sentence
    assert "inside the sampling noise" in text and "**LPIPS** (2 of 3 pairs differ significantly)" in text


def test_fid_replicates_spread_around_the_fid():
    from emotrain.eval.metrics.fid import frechet_distance, pool, stats_of

    rng = np.random.default_rng(3)
    real = {"awe": stats_of(rng.normal(0, 1, (300, 4))), "fear": stats_of(rng.normal(0, 1, (300, 4)))}
    gen = {"awe": rng.normal(0.5, 1, (200, 4)), "fear": rng.normal(0.5, 1, (200, 4))}
    value = frechet_distance(pool([stats_of(gen[e]) for e in gen]), pool(list(real.values())))
    reps = fid_replicates(gen, real, 200, seed=0)
    low, high = interval(reps)
    assert low < value < high and high - low > 0
    # one replicate's formula (projected Gram matrix) equals the reference Frechet distance on the same rows
    import torch

    from emotrain.eval.intervals import pooled_fid

    rows = np.concatenate([gen["awe"][:150], gen["fear"][50:]])
    real_pooled = pool(list(real.values()))
    x = torch.from_numpy(rows)
    got = pooled_fid(x, x @ torch.from_numpy(real_pooled.sqrt_sigma()), torch.from_numpy(real_pooled.mu),
                     float(np.trace(real_pooled.sigma)))
    assert got == pytest.approx(frechet_distance(stats_of(rows), real_pooled), rel=1e-9)
