"""Export: the stock diffusers pipeline with the exported LoRA + embedding predicts what our routed HiLoRA UNet does."""

import pytest
import torch
from safetensors.torch import load_file

from emocurate.core.emotions import EMOTIONS
from emotrain.export import emotion_lora_state_dict, export_emotion, layer_lora, save_lora, save_textual_inversion
from emotrain.model.hilora import add_hilora, hilora_layers, hilora_parameters, one_hot_weights, routing

PROMPT = "a photo of <awe> at dusk"


@pytest.fixture(scope="module")
def sd_folder():
    from emocurate.core.tiny import resolve

    return resolve("tiny:sd")


@pytest.fixture(scope="module")
def hilora_unet(sd_folder):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet").eval()
    add_hilora(unet, EMOTIONS, rank=4, alpha=2.0)  # scale 0.5: the export must fold it in
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in hilora_parameters(unet):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return unet


def our_prompt_embeds(folder, prompt, token, vector):
    """Our side: the placeholder token's input embedding replaced by the vector, then the frozen text encoder."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    tokenizer.add_tokens([token])
    text_encoder.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        text_encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(token)] = vector
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids)[0]  # (1, 77, D)


def stock_pipeline_prediction(folder, lora_dir, weight_name, ti_file, sample, t):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    with torch.no_grad():
        base = pipe.unet(sample, t, encoder_hidden_states=torch.zeros(1, 77, 32)).sample
        pipe.load_lora_weights(str(lora_dir), weight_name=weight_name)
        pipe.load_textual_inversion(str(ti_file), token="<awe>")
        embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
        lora = pipe.unet(sample, t, encoder_hidden_states=torch.zeros(1, 77, 32)).sample
        assert not torch.allclose(base, lora, atol=1e-3), "the LoRA was not applied"
        return embeds, pipe.unet(sample, t, encoder_hidden_states=embeds).sample


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_stock_pipeline_with_export_predicts_our_noise(sd_folder, hilora_unet, tmp_path, fmt):
    vector = torch.randn(32, generator=torch.Generator().manual_seed(1))
    paths = export_emotion(hilora_unet, "awe", "<awe>", vector[None], tmp_path, fmt)
    lora_file, ti_file, readme = paths
    assert lora_file.name == ("pytorch_lora_weights.safetensors" if fmt == "diffusers" else "emotion_awe_lora.safetensors")
    text = readme.read_text()
    assert "load_lora_weights" in text and "<awe>" in text
    # the kohya sentence names the kohya file (the diffusers export says how to get one)
    assert "`emotion_awe_lora.safetensors`" in text and ("--format kohya" in text) == (fmt == "diffusers")
    assert "DPMSolverMultistepScheduler" in text and "num_inference_steps=30" in text and 'to("cuda")' not in text
    sample = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([400])
    their_embeds, theirs = stock_pipeline_prediction(sd_folder, tmp_path, lora_file.name, ti_file, sample, t)
    our_embeds = our_prompt_embeds(sd_folder, PROMPT, "<awe>", vector)
    torch.testing.assert_close(their_embeds, our_embeds, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), routing(hilora_unet, one_hot_weights(hilora_unet, ["awe"])):
        ours = hilora_unet(sample, t, encoder_hidden_states=our_embeds).sample
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    # the same UNet routed to another emotion differs: the comparison can tell emotions apart
    with torch.no_grad(), routing(hilora_unet, one_hot_weights(hilora_unet, ["fear"])):
        assert not torch.allclose(hilora_unet(sample, t, encoder_hidden_states=our_embeds).sample, theirs, atol=1e-3)


def test_kohya_keys_and_rank(hilora_unet, tmp_path):
    state = emotion_lora_state_dict(hilora_unet, "sadness", "kohya")
    name = next(n for n, _ in hilora_layers(hilora_unet))
    key = "lora_unet_" + name.replace(".", "_")
    assert key.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_")
    assert state[f"{key}.lora_down.weight"].shape[0] == 8 and state[f"{key}.lora_up.weight"].shape[1] == 8
    assert float(state[f"{key}.alpha"]) == 8.0
    path = save_lora(state, tmp_path, "kohya", name="sadness")
    assert path.name == "sadness.safetensors" and set(load_file(path)) == set(state)


def test_fusion_mix_equals_the_routed_mix(hilora_unet):
    mix = {"amusement": 0.3, "awe": 0.2, "fear": 0.5}
    weights = torch.tensor([[mix.get(e, 0.0) for e in EMOTIONS]])
    x = torch.randn(1, 5, 32)
    name, layer = next((n, m) for n, m in hilora_layers(hilora_unet) if m.in_features == 32)
    down, up = layer_lora(layer, mix)
    assert down.shape[0] == 4 * 5  # 2 polarities + 3 emotions
    with torch.no_grad(), routing(hilora_unet, weights):
        routed = layer(x) - torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(x @ down.T @ up.T, routed, atol=1e-5, rtol=1e-5)


def test_export_errors_and_textual_inversion_file(hilora_unet, tmp_path):
    with pytest.raises(ValueError, match="unknown LoRA format"):
        emotion_lora_state_dict(hilora_unet, "awe", "a1111")
    with pytest.raises(ValueError, match="no HiLoRA adapter"):
        emotion_lora_state_dict(hilora_unet, "glee", "diffusers")
    path = save_textual_inversion(tmp_path / "awe.safetensors", "<awe>", torch.ones(2, 32))
    assert {k: tuple(v.shape) for k, v in load_file(path).items()} == {"<awe>": (2, 32)}
    with pytest.raises(ValueError, match="without spaces"):
        save_textual_inversion(tmp_path / "x.safetensors", "an awe", torch.ones(1, 32))


def test_export_follows_the_ablation_switches(sd_folder):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    add_hilora(unet, ["awe", "fear"], rank=4, emotion_loras=False)  # polarity LoRAs only: rank r, not 2r
    state = emotion_lora_state_dict(unet, "awe", "diffusers")
    assert state and all(v.shape[0] == 4 for k, v in state.items() if k.endswith("lora_A.weight"))
