import pytest
import torch

from emocurate.core.tiny import resolve
from emotrain.model.conditioning import (
    NeuroSymbolicMapper,
    VisualPerceptionEncoder,
    emotion_weights,
    encode_with_emotion,
    image_tokens,
    prompt_ids,
    semantic_loss,
    word_embeddings,
)


@pytest.fixture(scope="module")
def text():
    from transformers import CLIPTextModel, CLIPTokenizer

    path = resolve("tiny:sd")
    return CLIPTextModel.from_pretrained(path, subfolder="text_encoder"), CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")


@pytest.mark.parametrize("mode", ["onehot", "learnable", "text"])
def test_mapper_shapes_and_roundtrip(tmp_path, mode, text):
    torch.manual_seed(0)
    mapper = NeuroSymbolicMapper(num_emotions=4, out_dim=32, hidden=16, mode=mode)
    if mode == "text":
        mapper.set_word_embeddings(word_embeddings(*text, ["amusement", "awe", "anger", "sadness"]))
    w = torch.eye(4)
    out = mapper(w)
    assert out.shape == (4, 32)
    assert not torch.allclose(out[0], out[1])
    mapper.save_pretrained(tmp_path / "m")
    again = NeuroSymbolicMapper.from_pretrained(tmp_path / "m")
    assert torch.equal(again(w), out)
    assert (len(list(mapper.parameters())) == 0) == (mode == "text")


def test_encoder_is_not_degenerate():
    torch.manual_seed(0)
    enc = VisualPerceptionEncoder(emotion_dim=32, image_dim=48, d0=24)
    e1, e2 = torch.randn(2, 1, 32)
    v1, v2 = torch.randn(2, 1, 17, 48)
    base = enc(e1, v1)
    assert base.shape == (1, 32)
    # the attention term itself (beyond the residual) depends on e_i: several keys, softmax is not constant
    assert not torch.allclose(enc(e2, v1) - e2, base - e1)
    assert not torch.allclose(enc(e1, v2), base)


def test_encoder_roundtrip(tmp_path):
    enc = VisualPerceptionEncoder(emotion_dim=32, image_dim=32, d0=32)
    enc.save_pretrained(tmp_path / "e")
    again = VisualPerceptionEncoder.from_pretrained(tmp_path / "e")
    e, v = torch.randn(2, 32), torch.randn(2, 17, 32)
    assert torch.equal(again(e, v), enc(e, v))


def test_condition_equals_stock_encoder_with_new_token(text):
    """e_i^v in the placeholder == a stock text encoder whose added token carries e_i^v (textual inversion)."""
    encoder, tokenizer = text
    vec = torch.randn(1, 32, requires_grad=True)
    hidden, pooled = encode_with_emotion(encoder, tokenizer, vec, "a city street, <emotion>")
    assert hidden.shape == (1, 77, 32) and pooled.shape == (1, 32)
    (pooled * torch.randn_like(pooled)).sum().backward()  # a plain sum of a LayerNorm output has zero gradient
    assert vec.grad is not None and vec.grad.abs().sum() > 0

    import copy

    stock, tok = copy.deepcopy(encoder), copy.deepcopy(tokenizer)
    tok.add_tokens(["<awe>"])
    stock.resize_token_embeddings(len(tok))
    with torch.no_grad():
        stock.get_input_embeddings().weight[tok.convert_tokens_to_ids("<awe>")] = vec[0]
    ids = tok("a city street, <awe>", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.allclose(stock(input_ids=ids).last_hidden_state, hidden, atol=1e-5)


def test_prompt_ids_places_placeholder(text):
    _, tokenizer = text
    ids, pos = prompt_ids(tokenizer, "<emotion>")
    assert pos == 1 and ids[2] == tokenizer.eos_token_id and ids.shape == (77,)
    with pytest.raises(ValueError, match="exactly once"):
        prompt_ids(tokenizer, "no placeholder")


def test_image_tokens_from_tiny_clip():
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(resolve("tiny:clip"))
    tokens = image_tokens(clip.vision_model, torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 17, 32)  # CLS + 16 patches


def test_semantic_loss_variants():
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    for kind in ("cosine", "mae", "mse", "kl"):
        assert semantic_loss(a, a, kind).item() == pytest.approx(0, abs=1e-6)
        assert semantic_loss(a, b, kind).item() > 0
    assert semantic_loss(a, -a, "cosine").item() == pytest.approx(2.0, abs=1e-5)
    assert semantic_loss(a, 2 * a, "cosine").item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError):
        semantic_loss(a, b, "l3")


def test_emotion_weights():
    assert emotion_weights(["a", "b", "c"], {"b": 1}).tolist() == [0, 1, 0]
    assert emotion_weights(["a", "b", "c"], {"a": 1, "c": 3}).tolist() == [0.25, 0, 0.75]
    with pytest.raises(ValueError, match="not in this model"):
        emotion_weights(["a"], {"z": 1})
