"""CoEmoGen's emotion condition (paper Eq. 1 and Fig. 4, left): one-hot -> Mapper -> e_i; (e_i, image tokens) -> e_i^v;
e_i^v as a placeholder token's input embedding in the frozen CLIP text encoder -> e_i^c; plus L_SEM.

Design choice (Visual-perception Encoder): Eq. 1 with a single pooled image vector as key is degenerate (softmax over one
key is identically 1, so e_i would not matter). We use as keys/values the CLIP image encoder's full token sequence
(CLS + patch tokens of the last layer, through the encoder's post-layernorm: 257 x 1024 for ViT-L/14 at 224 px), so the
query e_i W_q chooses among many keys, and we add a residual path e_i^v = e_i + Attn(e_i, v_i): the emotion descriptor
always reaches the text encoder even when the attention output is small. Both are our choices (the paper's Eq. 1 has
neither). The emotion clusters model exactly these token sets. It does not run the UNet or HiLoRA.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

PLACEHOLDER = "<emotion>"


def _small_init(linear: nn.Linear) -> nn.Linear:
    """Outputs that land in the text encoder's input space start at the token-embedding scale (CLIP init std 0.02)."""
    nn.init.normal_(linear.weight, std=0.02 / math.sqrt(linear.in_features) * math.sqrt(2.0))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class NeuroSymbolicMapper(ModelMixin, ConfigMixin):
    """Emotion weights (B, E) (one-hot for one emotion, a convex mix for fusion) -> emotion descriptor e_i (B, D).

    mode "onehot": Linear -> GELU -> Linear (the paper's default input; the paper says "fully connected layers with
    non-linear activations": two layers and GELU are ours); "learnable": a trainable vector per emotion;
    "text": the frozen input embedding of the emotion word (filled by `set_word_embeddings`). All three read the same
    (B, E) weights, so fusion works with any of them.
    """

    @register_to_config
    def __init__(self, num_emotions: int, out_dim: int, hidden: int = 512, mode: str = "onehot"):
        super().__init__()
        if mode not in ("onehot", "learnable", "text"):
            raise ValueError(f"mode must be onehot, learnable or text; got {mode!r}")
        self.mode = mode
        if mode == "onehot":
            self.net = nn.Sequential(nn.Linear(num_emotions, hidden), nn.GELU(), _small_init(nn.Linear(hidden, out_dim)))
        elif mode == "learnable":
            self.table = nn.Parameter(torch.randn(num_emotions, out_dim) * 0.02)
        else:
            self.register_buffer("table", torch.zeros(num_emotions, out_dim))

    def set_word_embeddings(self, table: torch.Tensor) -> None:
        """Fill the frozen table of mode "text" (E, D)."""
        if self.mode != "text":
            raise ValueError("set_word_embeddings is only for mode 'text'")
        self.table.copy_(table)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:  # (B, E) -> (B, D)
        if self.mode == "onehot":
            return self.net(weights)
        return weights.to(self.table.dtype) @ self.table


class VisualPerceptionEncoder(ModelMixin, ConfigMixin):
    """Eq. 1 with several keys and a residual: e_i (B, D), image tokens v_i (B, T, Dv) -> e_i^v (B, D)."""

    @register_to_config
    def __init__(self, emotion_dim: int, image_dim: int, d0: int = 768):
        super().__init__()
        self.to_q = nn.Linear(emotion_dim, d0, bias=False)  # W_q
        self.to_k = nn.Linear(image_dim, d0, bias=False)  # W_k
        self.to_v = _small_init(nn.Linear(image_dim, d0, bias=False))  # W_v
        # Eq. 1's output lives in d0; when d0 differs from the text width a projection maps it back.
        self.to_out = nn.Identity() if d0 == emotion_dim else _small_init(nn.Linear(d0, emotion_dim, bias=False))

    def forward(self, emotion: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        image_tokens = image_tokens.to(self.to_k.weight.dtype)
        q = self.to_q(emotion.to(self.to_q.weight.dtype))[:, None]  # (B, 1, d0)
        k = self.to_k(image_tokens)  # (B, T, d0)
        v = self.to_v(image_tokens)  # (B, T, d0)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)  # (B, 1, T)
        return emotion + self.to_out((attn @ v)[:, 0])  # (B, D)


def build_emotion_modules(num_emotions: int, text_dim: int, image_dim: int, hidden: int, d0: int, mode: str):
    """A fresh (mapper, encoder) pair for a recipe."""
    return NeuroSymbolicMapper(num_emotions, text_dim, hidden, mode), VisualPerceptionEncoder(text_dim, image_dim, d0)


def image_tokens(vision_model, pixel_values: torch.Tensor) -> torch.Tensor:
    """CLIP image encoder tokens v_i (B, T, Dv): CLS + patches of the last layer through the post-layernorm."""
    hidden = vision_model(pixel_values=pixel_values).last_hidden_state  # (B, T, Dv)
    return vision_model.post_layernorm(hidden)


def prompt_ids(tokenizer: "CLIPTokenizer", prompt: str = PLACEHOLDER) -> tuple[torch.Tensor, int]:
    """Token ids (L,) of a prompt holding `<emotion>` once, and the placeholder's position.

    The placeholder's own id is the BOS id (it is replaced before the encoder sees it, and it stays below EOS so CLIP's
    EOS pooling is unaffected); the text around it is tokenised as in a stock pipeline.
    """
    if prompt.count(PLACEHOLDER) != 1:
        raise ValueError(f"prompt must contain {PLACEHOLDER!r} exactly once; got {prompt!r}")
    before, after = (p.strip() for p in prompt.split(PLACEHOLDER))
    tok = lambda s: tokenizer(s, add_special_tokens=False).input_ids if s else []  # noqa: E731
    ids = [tokenizer.bos_token_id, *tok(before), tokenizer.bos_token_id, *tok(after), tokenizer.eos_token_id]
    length = tokenizer.model_max_length
    if len(ids) > length:
        raise ValueError(f"prompt {prompt!r} is longer than the text encoder's {length} tokens")
    position = 1 + len(tok(before))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return torch.tensor(ids + [pad] * (length - len(ids))), position


def encode_with_emotion(
    text_encoder: "CLIPTextModel", tokenizer: "CLIPTokenizer", emotion_embeds: torch.Tensor, prompt: str = PLACEHOLDER
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen text encoder with e_i^v (B, D) as the placeholder's input embedding.

    Returns the emotion condition e_i^c (B, L, D) for the UNet and the pooled (EOS) output (B, D). Gradients flow
    back to `emotion_embeds`. A forward hook on the token-embedding layer swaps the vector in, so the stock
    `CLIPTextModel.forward` (masking, pooling) runs unchanged.
    """
    ids, position = prompt_ids(tokenizer, prompt)
    batch = emotion_embeds.shape[0]
    ids = ids.to(emotion_embeds.device)[None].expand(batch, -1)  # (B, L)

    def swap(_module, _inputs, output):  # output (B, L, D)
        output = output.clone()
        output[:, position] = emotion_embeds.to(output.dtype)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(swap)
    try:
        out = text_encoder(input_ids=ids)
    finally:
        handle.remove()
    return out.last_hidden_state, out.pooler_output


def word_embeddings(text_encoder, tokenizer, emotions: Sequence[str]) -> torch.Tensor:
    """The frozen input embedding of each emotion word (E, D): the mean over the word's tokens."""
    table = text_encoder.get_input_embeddings().weight
    rows = []
    for name in emotions:
        ids = tokenizer(name, add_special_tokens=False).input_ids
        rows.append(table[torch.tensor(ids, device=table.device)].float().mean(0))
    return torch.stack(rows).detach().cpu()


def semantic_loss(
    condition: torch.Tensor, caption: torch.Tensor, kind: Literal["cosine", "mae", "mse", "kl"] = "cosine"
) -> torch.Tensor:
    """L_SEM between projected pooled embeddings (B, P) of the emotion condition and of the caption (Eq. 5 and Table 2c).

    cosine: mean of 1 - cos; mae / mse: on the raw projected vectors; kl: KL(softmax(caption) || softmax(condition))
    over the feature dimension.
    """
    condition, caption = condition.float(), caption.float()
    if kind == "cosine":
        return (1 - F.cosine_similarity(condition, caption, dim=-1)).mean()
    if kind == "mae":
        return F.l1_loss(condition, caption)
    if kind == "mse":
        return F.mse_loss(condition, caption)
    if kind == "kl":
        return F.kl_div(F.log_softmax(condition, -1), F.log_softmax(caption, -1), log_target=True, reduction="batchmean")
    raise ValueError(f"semantic loss must be cosine, mae, mse or kl; got {kind!r}")


def emotion_weights(emotions: Sequence[str], mix: dict[str, float]) -> torch.Tensor:
    """A (E,) weight row from {emotion: weight}; weights are normalised to sum to 1 (one-hot for a single emotion)."""
    unknown = [e for e in mix if e not in emotions]
    if unknown:
        raise ValueError(f"emotion(s) {unknown} not in this model; it knows: {', '.join(emotions)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix weights must be >= 0 with a positive sum; got {mix}")
    row = torch.zeros(len(emotions))
    for name, w in mix.items():
        row[list(emotions).index(name)] = float(w)
    return row / row.sum()
