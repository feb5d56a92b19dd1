"""benchmarks/train_step.py --full --dry-run: the SD 1.5-size models build (meta device) and every step variant runs
once at mid-size on CPU, ending with the ratio lines the README quotes."""

import importlib.util

import pytest

from tests.helpers.paths import REPO


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_builds_full_size_and_runs_each_variant(capsys):
    load_benchmark("train_step").main(["--full", "--dry-run"])
    out = capsys.readouterr().out
    assert "VAE encoder" in out and "1116.7" in out  # SD 1.5's VAE encoder at 512 px, counted on the meta device
    for variant in ("(a) uncached (today)", "(b) cached", "(c) method limit"):
        assert f"{variant}" in out and "images/s" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("train step (cached)/method limit time ratio: ") and "(uncached: " in last
