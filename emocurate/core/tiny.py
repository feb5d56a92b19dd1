"""Tiny random models built in code, saved once to a cache folder and then loaded like any Hub model.

A model id `tiny:NAME` (e.g. `tiny:clip`) resolves to that folder, so the demo recipe and the tests run the same
`from_pretrained` code path as `openai/clip-vit-large-patch14`. The weights are random: outputs are noise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from emocurate.core.filemode import follow_umask

TINY_PREFIX = "tiny:"


def cache_root() -> Path:
    """Where tiny models are saved: $EMOCURATE_TINY_CACHE, else ~/.cache/emocurate/tiny."""
    return Path(os.environ.get("EMOCURATE_TINY_CACHE", Path.home() / ".cache" / "emocurate" / "tiny"))


def resolve(model_id: str) -> str:
    """Return a path or Hub id loadable by `from_pretrained`; `tiny:NAME` is built (once) into the cache."""
    if not model_id.startswith(TINY_PREFIX):
        return model_id
    name = model_id[len(TINY_PREFIX):]
    if name not in BUILDERS:
        raise ValueError(f"unknown tiny model {model_id!r}; known: {', '.join(TINY_PREFIX + n for n in BUILDERS)}")
    target = cache_root() / name
    if not (target / ".complete").exists():
        import fcntl

        target.parent.mkdir(parents=True, exist_ok=True)
        # One builder at a time (several test workers or training ranks may ask at once); the others wait, then reuse it.
        with open(target.parent / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / ".complete").exists():
                tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
                BUILDERS[name](tmp)
                follow_umask(tmp)  # mkdtemp makes it 0700, safetensors files 0600
                (tmp / ".complete").write_text("ok\n")  # written last: its presence means the folder is whole
                shutil.rmtree(target, ignore_errors=True)  # a partial folder from a killed build
                tmp.rename(target)
    return str(target)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-character table (the standard one), so every string is tokenisable with no merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_tokenizer():
    """A real `CLIPTokenizer` with a byte-level vocabulary (514 tokens, no merges): one token per character."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_clip(folder: Path, hidden: int = 32, image_size: int = 32, patch: int = 8, seed: int = 0) -> None:
    """Save a tiny CLIPModel (text and vision towers, projection 32) with its tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2, num_attention_heads=4,
            image_size=image_size, patch_size=patch,
        ),
        projection_dim=hidden,
    )
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)


def build_sd(folder: Path, seed: int = 0) -> None:
    """Save a tiny Stable Diffusion 1.5-shaped pipeline (UNet 32/64, VAE, the tiny CLIP's text tower, DDPM scheduler).

    Its text encoder shares weights with `tiny:clip`'s text tower, as SD 1.5's does with CLIP ViT-L/14.
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPModel, CLIPTextModel

    clip = CLIPModel.from_pretrained(resolve("tiny:clip"))
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=clip.config.text_config.hidden_size, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32,
    )
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                              clip_sample=False)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def build_resnet(folder: Path, num_labels: int = 10, image_size: int = 32, seed: int = 0) -> None:
    """Save a tiny transformers ResNet image classifier (shaped like `microsoft/resnet-50`) with its image processor."""
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=num_labels,
    )
    ResNetForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=0.875).save_pretrained(folder)


_CHAT_TEMPLATE = (  # the shape of Qwen2-VL's template: <|im_start|>role\n ... <|im_end|>, an image as vision_start/pad/end
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                  "<|video_pad|>")
_WORDS = (  # the tiny tokenizer's training text: its merges make whole words, so the noise captions read as word salad
    "amusement awe contentment excitement anger disgust fear sadness bright dark colorful pale warm cold sunny stormy "
    "a the of in on with and under over near beach forest city street room mountain river sky sea field garden crowd "
    "child woman man dog cat bird flower tree car house light shadow smile tears frown scream laugh dance run sit "
    "stand hold look gentle vivid glowing gloomy misty golden blue red green yellow grey black white close-up portrait"
)


def qwen_tokenizer():
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens, trained in code on a few hundred words (~500 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [_WORDS, _WORDS.replace(" ", ", "), _WORDS.title()] * 4
    trainer = trainers.BpeTrainer(vocab_size=520, special_tokens=list(_QWEN_SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", model_max_length=4096)


def build_captioner(folder: Path, seed: int = 0) -> None:
    """Save a tiny random Qwen2.5-VL chat model (2 text + 2 vision layers, width 32) with a processor built offline.

    Loads through AutoProcessor + AutoModelForImageTextToText exactly like Qwen/Qwen2.5-VL-3B-Instruct; images are
    capped at 56x56 pixels (4 image tokens). Weights are random with a wide init, so it generates varied noise.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10000.0,
            rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}, tie_word_embeddings=False,
            initializer_range=0.5,  # wide random logits: the noise varies instead of repeating one token
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=32, out_hidden_size=32, num_heads=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(folder)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56),
        tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=_CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "clip": build_clip,
    "sd": build_sd,
    "resnet": build_resnet,
    "captioner": build_captioner,
}
