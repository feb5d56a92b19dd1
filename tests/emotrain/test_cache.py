"""The feature cache: training from it follows training without it step for step; a killed precompute resumes; a changed
key (resolution, captions) starts a new cache; the disk cost is stated and checked before the pass."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from emotrain import cache, cache_shards
from emotrain.train import train
from tests.helpers.paths import REPO


def _run(recipe, dataset, out, **kwargs):
    """Train; return the logged loss per step and the cache progress calls (task, advance, total)."""
    losses, calls = [], []
    train(recipe, dataset, out, progress=lambda step, total, info: losses.append(info["loss"]),
          cache_progress=lambda task, advance=0, total=None: calls.append((advance, total)), **kwargs)
    return losses, calls


def _folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("store,rtol", [("disk", 1e-6), ("memory", 1e-4)], ids=["disk-fp32", "memory-fp16"])
def test_cached_training_gives_the_same_losses(tmp_path, tiny_dataset, tiny_recipe, store, rtol, monkeypatch):
    """Same seed, 4 steps with random flips (both views cached): fp32 storage matches to float noise (relative 1e-6;
    measured here: identical, 8 steps), fp16 storage within its rounding (1e-4; measured 1.4e-5; bf16 2.5e-4). Once the
    cache is complete no image is decoded (the emotion clusters come from the cached tokens too)."""
    import emotrain.data

    dtype = "fp32" if store == "disk" else "fp16"
    common = ["optim.max_steps=4", "data.random_flip=true", f"data.cache_dir={tmp_path / 'features'}"]
    plain, no_calls = _run(tiny_recipe(*common, "data.cache=off"), tiny_dataset, tmp_path / "plain")

    decode, ready = emotrain.data.load_image, []

    def load_image(cell):
        assert not ready, "an image was decoded after the feature cache was complete"
        return decode(cell)

    monkeypatch.setattr(emotrain.data, "load_image", load_image)
    calls = []

    def cache_progress(task, advance=0, total=None):
        calls.append((advance, total))
        if sum(a for a, _ in calls) == calls[0][1]:
            ready.append(True)

    cached = []
    train(tiny_recipe(*common, f"data.cache={store}", f"data.cache_dtype={dtype}"), tiny_dataset, tmp_path / "cached",
          progress=lambda step, total, info: cached.append(info["loss"]), cache_progress=cache_progress)
    assert ready
    assert no_calls == [] and calls[0] == (0, 48) and sum(a for a, _ in calls) == 48  # 24 rows x 2 views encoded
    assert len(plain) == len(cached) == 4
    assert plain == pytest.approx(cached, rel=rtol, abs=0)
    assert plain != pytest.approx([plain[0]] * 4)  # the losses move: the comparison is not of constants
    on_disk = _folders(tmp_path / "features")
    assert len(on_disk) == (1 if store == "disk" else 0)
    if store == "disk":
        shard = load_file(str(on_disk[0] / "shard-00000.safetensors"))
        assert shard["image_tokens_flip"].shape == (24, 17, 32) and shard["latent_std"].dtype == torch.float32
        assert not torch.equal(shard["latent_mean"], shard["latent_mean_flip"])
        assert shard["rows"].tolist() == list(range(24)) and shard["caption_embeds"].shape == (24, 32)


def test_killed_precompute_resumes(tmp_path, tiny_dataset, tiny_overrides):
    """SIGKILL after 2 of 6 shards (4 rows each), a stray half-written shard; the rerun encodes only the other 4 and the
    cache equals one written in a single pass."""
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal
        from emotrain import cache_shards
        from emotrain.recipe import load_recipe
        from emotrain.train import train
        cache_shards.SHARD_ROWS = 4
        done = []
        def progress(task, advance=0, total=None):
            done.append(advance)
            if len(done) == 3:  # the opening call, then two shards
                os.kill(os.getpid(), signal.SIGKILL)
        recipe = load_recipe(None, {[*tiny_overrides, "optim.max_steps=1", f"data.cache_dir={killed}"]!r})
        train(recipe, {tiny_dataset!r}, {str(tmp_path / "run-killed")!r}, cache_progress=progress)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    [folder] = _folders(killed)
    assert sorted(p.name for p in folder.glob("shard-*")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert not (folder / cache_shards.MANIFEST).exists()
    (folder / ".shard-00002.safetensors.99999.tmp").write_bytes(b"half a shard")  # as a kill during a write leaves

    mp = pytest.MonkeyPatch()
    mp.setattr(cache_shards, "SHARD_ROWS", 4)
    try:
        from emotrain.recipe import load_recipe

        def recipe(root):
            return load_recipe(None, [*tiny_overrides, "optim.max_steps=1", f"data.cache_dir={root}"])

        _, calls = _run(recipe(killed), tiny_dataset, tmp_path / "run-resumed")
        _, straight_calls = _run(recipe(tmp_path / "straight"), tiny_dataset, tmp_path / "run-straight")
    finally:
        mp.undo()
    assert calls[0] == (8, 24) and [a for a, _ in calls[1:]] == [4, 4, 4, 4]  # 8 rows kept, 16 encoded
    assert straight_calls[0] == (0, 24)
    [other] = _folders(tmp_path / "straight")
    assert other.name == folder.name  # same key
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in other.iterdir())  # stray .tmp removed
    for i in range(6):
        a = load_file(str(folder / f"shard-0000{i}.safetensors"))
        b = load_file(str(other / f"shard-0000{i}.safetensors"))
        assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a), i


def test_changed_key_starts_a_new_cache(tmp_path, tiny_dataset, tiny_recipe, make_dataset):
    root = tmp_path / "features"
    base = ["optim.max_steps=1", f"data.cache_dir={root}"]
    _, first = _run(tiny_recipe(*base), tiny_dataset, tmp_path / "a")
    _, again = _run(tiny_recipe(*base), tiny_dataset, tmp_path / "b")
    assert first[0] == (0, 24) and again == []  # complete: reused, nothing encoded, no bar
    [one] = _folders(root)

    _, other_size = _run(tiny_recipe(*base, "data.resolution=16"), tiny_dataset, tmp_path / "c")
    assert other_size[0] == (0, 24) and len(_folders(root)) == 2

    def edit(rows):
        rows["caption"][3] = "a different caption"

    edited = make_dataset(tmp_path / "edited", edit=edit, counts=[8, 6, 6, 4])
    _, other_captions = _run(tiny_recipe(*base), edited, tmp_path / "d")
    assert other_captions[0] == (0, 24)

    _, no_tokens = _run(tiny_recipe(*base, "data.cache_image_tokens=false"), tiny_dataset, tmp_path / "e")
    assert no_tokens[0] == (0, 24)  # latents + captions only: the CLIP tower runs each step
    folders = _folders(root)
    assert len(folders) == 4 and one in folders
    keys = [json.loads((f / "key.json").read_text())["key"] for f in folders]
    assert sorted(k["resolution"] for k in keys) == [16, 32, 32, 32]
    assert len({k["dataset"]["labels_captions"] for k in keys}) == 2
    assert sorted("image_tokens" in k["tensors"] for k in keys) == [False, True, True, True]


def test_disk_cost_is_stated_and_checked(tmp_path, monkeypatch):
    """EmoSet-118K at 512 px, ViT-L/14 tokens, fp16: the cost line; too little room refuses disk, auto falls back."""
    from emotrain.recipe import DataConfig

    emoset = cache.Layout(latent_shape=(4, 64, 64), token_shape=(257, 1024), caption_dim=768, views=(False,))
    line = cache.cost_line(118_102, emoset, "fp16")
    assert line == "118,102 rows x (latents 65.5 kB + image tokens 526.3 kB + caption 1.5 kB) = 70.1 GB (fp16)"
    assert "= 140.2 GB (fp32)" in cache.cost_line(118_102, emoset, "fp32")

    free = {"bytes": 20 * 10**9}
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: type("Usage", (), {"free": free["bytes"]})())
    key = {"k": 1}
    with pytest.raises(ValueError, match=r"data.cache=disk needs 70.1 GB .*data.cache_image_tokens=false \(7.9 GB\)"):
        cache.plan(DataConfig(cache="disk"), 118_102, emoset, tmp_path, key)
    auto = cache.plan(DataConfig(cache="auto"), 118_102, emoset, tmp_path, key)
    assert auto.mode == "disk" and auto.layout.token_shape is None and "image tokens left out" in auto.message
    free["bytes"] = 2**30
    off = cache.plan(DataConfig(cache="auto"), 118_102, emoset, tmp_path, key)
    assert off.mode == "off" and "does not fit" in off.message
    free["bytes"] = 200 * 2**30
    full = cache.plan(DataConfig(cache="auto"), 118_102, emoset, tmp_path, key)
    assert full.mode == "disk" and full.layout.token_shape == (257, 1024) and "70.1 GB" in full.message


@pytest.mark.slow
def test_two_ranks_encode_alternate_shards(tmp_path, tiny_dataset, tiny_overrides):
    """Under `accelerate launch` with 2 CPU ranks, shard i is written by rank i % 2 (6 shards of 4 rows); then both
    ranks train from the complete cache."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "fit.py"
    script.write_text("from emotrain import cache_shards\ncache_shards.SHARD_ROWS = 4\nfrom emotrain.cli import app\napp()\n")
    root = tmp_path / "features"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(port), str(script), "fit", "--dataset", tiny_dataset, "--out",
           str(tmp_path / "run"), *tiny_overrides, "optim.batch_size=1", "optim.max_steps=2", f"data.cache_dir={root}"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = _folders(root)
    assert (folder / cache_shards.MANIFEST).is_file()
    from safetensors import safe_open

    writers = {}
    for i in range(6):
        with safe_open(str(folder / cache_shards.shard_name(i)), "pt") as f:
            writers[i] = (f.metadata()["rank"], f.metadata()["world"])
    assert writers == {i: (str(i % 2), "2") for i in range(6)}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == 2
