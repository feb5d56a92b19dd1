"""A trained run exported for one emotion: the stock diffusers pipeline + exported files predicts our model's noise."""

import pytest
import torch

from emocurate.core.tiny import resolve
from emotrain.model.conditioning import encode_with_emotion
from emotrain.export_run import emotion_embeddings, export_run
from emotrain.generate import load_run
from emotrain.model.hilora import routing


def test_stock_pipeline_matches_our_routed_model(tmp_path, trained_run):
    from diffusers import StableDiffusionPipeline

    paths = export_run(trained_run, "awe", tmp_path, "diffusers", num_vectors=2)
    lora, ti, readme = paths
    assert ti.name == "awe.safetensors" and readme.is_file()

    ours = load_run(trained_run, device="cpu")
    vectors = emotion_embeddings(ours, {"awe": 1.0}, 2)
    assert vectors.shape == (2, 32) and not torch.allclose(vectors[0], vectors[1])

    pipe = StableDiffusionPipeline.from_pretrained(resolve("tiny:sd"), safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(tmp_path), weight_name=lora.name)
    pipe.load_textual_inversion(str(ti), token="<awe>")
    sample = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        # two vectors: diffusers expands "<awe>" to "<awe> <awe>_1"; ours puts vector 0 alone, so compare vector 0 only
        one = export_run(trained_run, "awe", tmp_path / "one", "diffusers")[1]
        pipe2 = StableDiffusionPipeline.from_pretrained(resolve("tiny:sd"), safety_checker=None, requires_safety_checker=False)
        pipe2.load_lora_weights(str(tmp_path / "one"), weight_name=lora.name)
        pipe2.load_textual_inversion(str(one), token="<awe>")
        embeds, _ = pipe2.encode_prompt("<awe>", "cpu", 1, False)
        theirs = pipe2.unet(sample, t, encoder_hidden_states=embeds).sample
        cond, _ = encode_with_emotion(ours.pipe.text_encoder, ours.pipe.tokenizer, vectors[:1], "<emotion>")
        torch.testing.assert_close(embeds, cond, atol=1e-5, rtol=1e-5)
        with routing(ours.pipe.unet, torch.tensor([[0.0, 1.0, 0.0, 0.0]])):  # emotions: amusement, awe, anger, sadness
            mine = ours.pipe.unet(sample, t, encoder_hidden_states=cond).sample
        torch.testing.assert_close(theirs, mine, atol=1e-5, rtol=1e-4)
        # two-vector embedding loads too, as two tokens
        assert len(pipe.tokenizer) == len(pipe2.tokenizer) + 1


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_readme_snippet_runs_as_written(tmp_path, trained_run, fmt):
    """The exported README's Python block, run as is in a fresh interpreter on this CPU-only machine: it loads the
    base model the run was trained on (a local folder here, never a `tiny:` id), the LoRA and the embedding, sets the
    run's scheduler, and writes an image."""
    import json
    import os
    import re
    import subprocess
    import sys

    readme = export_run(trained_run, "awe", tmp_path / "export", fmt)[2].read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "tiny:" not in code and 'to("cuda")' not in code
    run = json.loads((trained_run / "config.json").read_text())["recipe"]["run"]
    assert f"num_inference_steps={run['inference_steps']}, guidance_scale={run['guidance']}" in code
    assert "pipe.scheduler = DPMSolverMultistepScheduler.from_config" in code  # the run's run.scheduler
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the snippet needs diffusers, not emotrain
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "emotion.png").stat().st_size > 0
