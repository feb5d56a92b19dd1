"""A trained run exported for one emotion: the stock diffusers pipeline + exported files predicts our model's noise."""

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
