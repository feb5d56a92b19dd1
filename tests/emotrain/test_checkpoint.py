import pytest
from accelerate import Accelerator

from emotrain import checkpoint


def test_latest_skips_half_written_and_rotation_keeps_last(tmp_path):
    import torch

    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    for step in (1, 2, 3):
        checkpoint.save(acc, tmp_path, step, step * 4, {"mapper": {"w": torch.full((2,), float(step))}}, opt, keep=2)
    (tmp_path / ".checkpoint-9.tmp").mkdir()  # a crash mid-write leaves only a hidden tmp folder
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    latest = checkpoint.find(tmp_path, "latest")
    state, tensors = checkpoint.load(acc, latest)
    assert state == {"step": 3, "position": 12, "num_processes": 1} and tensors["mapper"]["w"].tolist() == [3.0, 3.0]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.find(tmp_path / "empty", "latest")
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        checkpoint.find(tmp_path, str(tmp_path / ".checkpoint-9.tmp"))


def test_rng_restored(tmp_path):
    import torch

    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    torch.manual_seed(123)
    checkpoint.save(acc, tmp_path, 1, 0, {}, opt, keep=1)
    expected = torch.rand(3)
    torch.manual_seed(999)
    checkpoint.load(acc, checkpoint.find(tmp_path, "latest"))
    assert torch.equal(torch.rand(3), expected)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_latest_skips_a_damaged_checkpoint_with_a_warning(tmp_path, caplog):
    import torch

    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    for step in (1, 2, 3):
        checkpoint.save(acc, tmp_path, step, step, {"mapper": {"w": torch.full((64,), float(step))}}, opt, keep=3)
    assert all(checkpoint.damage(p) is None for p in checkpoint.checkpoints(tmp_path))
    _truncate(tmp_path / "checkpoint-3" / "mapper.safetensors")  # disk full while the newest was copied
    with caplog.at_level("WARNING", logger="emotrain"):
        assert checkpoint.find(tmp_path, "latest").name == "checkpoint-2"
    assert "checkpoint-3 is damaged (mapper.safetensors unreadable" in caplog.text and "resuming from checkpoint-2" in caplog.text
    _truncate(tmp_path / "checkpoint-2" / "optimizer.pt")
    assert checkpoint.find(tmp_path, "latest").name == "checkpoint-1"
    assert "optimizer.pt truncated" in checkpoint.damage(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match=r"checkpoint is damaged \(mapper.safetensors.*resume from .*checkpoint-1"):
        checkpoint.find(tmp_path, str(tmp_path / "checkpoint-3"))
    (tmp_path / "checkpoint-1" / "rng_0.pt").unlink()
    with pytest.raises(ValueError, match="every checkpoint under .* is damaged: checkpoint-3: .*checkpoint-1: missing rng_0.pt"):
        checkpoint.find(tmp_path, "latest")


def test_optimizer_state_of_other_parameters_is_a_clear_error(tmp_path):
    import torch

    stacked = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(10, 4, 3))])  # the old layout: one table per layer
    torch.save(stacked.state_dict(), tmp_path / "optimizer.pt")
    per_adapter = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(4, 3)) for _ in range(10)])
    with pytest.raises(ValueError, match="cannot resume: start a new run folder"):
        checkpoint.load_optimizer(per_adapter, tmp_path)
