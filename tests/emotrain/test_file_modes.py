"""emotrain's safetensors outputs (LoRA exports, textual inversion, clusters, checkpoints) follow the user's umask."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.umask import umask, wrong_modes


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_exports_clusters_and_checkpoints_follow_the_umask(tmp_path, mask):
    from accelerate import Accelerator

    from emotrain import checkpoint
    from emotrain.export import save_lora, save_textual_inversion
    from emotrain.model.clusters import ClusterAccumulator

    acc = ClusterAccumulator(["awe"])
    acc.add(torch.randn(4, 2, 3), ["awe"] * 4)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    with umask(mask):
        save_lora({"a.lora_down.weight": torch.zeros(2, 3), "a.lora_up.weight": torch.zeros(3, 2)}, tmp_path / "lora")
        save_textual_inversion(tmp_path / "ti" / "awe.safetensors", "<awe>", torch.zeros(2, 4))
        acc.finish().save(tmp_path / "clusters.safetensors")
        checkpoint.save(Accelerator(cpu=True), tmp_path / "ckpt", 1, 0, {"mapper": {"w": torch.zeros(2)}}, opt, keep=1)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sum(p.suffix == ".safetensors" for p in written) == 4
    for out in tmp_path.iterdir():  # (pytest makes tmp_path itself 0700)
        assert wrong_modes(out, mask) == {}
