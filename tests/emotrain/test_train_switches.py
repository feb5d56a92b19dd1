"""Optional training switches: channels-last gives the same losses; 8-bit AdamW without bitsandbytes is one clear error.
(torch.compile of the UNet: measured by benchmarks/train_step.py --switches --compile; a CPU compile takes minutes.)"""

import importlib.util

import pytest

from emotrain.optimizer import adamw_class
from emotrain.train import train


def _losses(recipe, dataset, out):
    losses = []
    train(recipe, dataset, out, progress=lambda step, total, info: losses.append(info["loss"]))
    return losses


def test_channels_last_gives_the_same_losses(tmp_path, tiny_dataset, tiny_recipe):
    plain = _losses(tiny_recipe("optim.max_steps=3"), tiny_dataset, tmp_path / "plain")
    last = _losses(tiny_recipe("optim.max_steps=3", "run.channels_last=true"), tiny_dataset, tmp_path / "last")
    assert len(plain) == 3 and plain == pytest.approx(last, rel=1e-5, abs=0)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_adam_8bit_without_bitsandbytes_says_what_to_install(tmp_path, tiny_dataset, tiny_recipe):
    with pytest.raises(ValueError, match=r"optim.adam_8bit=true needs bitsandbytes: `pip install bitsandbytes`"):
        train(tiny_recipe("optim.max_steps=1", "optim.adam_8bit=true"), tiny_dataset, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any step
    import torch

    assert adamw_class(False) is torch.optim.AdamW
