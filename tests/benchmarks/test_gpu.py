import importlib.util
from pathlib import Path

import pytest
from tests.helpers.paths import REPO

ROOT = REPO


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_refuses_clearly(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert load_benchmark("gpu").main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_dry_run_runs_every_code_path_on_tiny_models(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    assert load_benchmark("gpu").main(["--dry-run", "--results", str(results)]) == 0
    text = results.read_text()
    assert "dry run, tiny models" in text and "hilora/lora step time ratio:" in text
    assert "images/s" in text and "steps/s" in text
