"""Hierarchical LoRA (paper Eq. 3) on a frozen diffusers UNet: per-emotion and per-polarity LoRAs routed per sample.

It adds, routes, saves and loads the adapters; training loops, conditioning and export to standard LoRAs live elsewhere.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from emocurate.core.emotions import POLARITIES, check_emotions, polarity_of

DEFAULT_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
"""The attention projections (attn1 and attn2) of every transformer block. Our choice: the paper puts HiLoRA in the
U-Net without naming the layers; these are the layers diffusers' LoRA examples adapt."""


@dataclass(frozen=True)
class Routing:
    """Which adapters act for each sample of a batch, with what weight (computed once per `set_routing`).

    `used` lists the routed adapters (positions in `HiLoRALinear.adapters`, each with a non-zero weight somewhere in
    the batch); `index` points into `used`. Only the non-zero entries of each row are kept: K adapters per sample
    (2 for one-hot rows: emotion + polarity), padded with weight 0 (pointing at a used adapter) where a row has fewer.
    With `shared`, all rows are equal and row 0 serves the whole batch; with `unit`, every weight is 1.
    """

    batch: int
    used: tuple[int, ...]
    index: torch.Tensor  # (B, K) long, into `used`
    weight: torch.Tensor  # (B, K)
    shared: bool
    unit: bool


class HiLoRALinear(nn.Linear):
    """A frozen `nn.Linear` plus emotion and polarity LoRAs: y = W x + b + s * sum_k w_k B_k A_k x.

    It keeps the base layer's own `weight` and `bias` parameters (so the UNet's state-dict keys do not change).
    Adapters are named by `adapters` ("emotion.awe", ..., "polarity.negative"); adapter i owns two parameters of its
    own, lora_A[i] (r, in) as peft's `lora_A.weight` and lora_B[i] (r, out), the transpose of peft's `lora_B.weight`.

    Why one parameter per adapter (paper: "only the LoRAs corresponding to the input image's emotion label and its
    associated polarity [are] activated during updates"): a forward stacks only the adapters routed in that batch, so
    an adapter that was not routed gets no gradient at all (`.grad is None`), and every torch optimizer skips such a
    parameter: AdamW applies neither its momentum nor its weight decay, and its per-parameter step count (bias
    correction) does not advance. A non-routed adapter is therefore bit-identical before and after the step, for any
    optimizer, under mixed precision and DDP (a parameter no rank used keeps `.grad is None`). One stacked
    parameter per layer would instead let AdamW move rows whose gradient is zero. The stack of the routed adapters
    (<= 10 small tensors per layer) keeps the batched per-sample routing: two batched matmuls per layer.
    """

    def __init__(self, base: nn.Linear, emotions: Sequence[str], rank: int, alpha: float,
                 emotion_loras: bool = True, polarity_loras: bool = True):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.emotions = tuple(emotions)
        self.adapters = adapter_table(self.emotions, emotion_loras, polarity_loras)
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        n, device = len(self.adapters), self.weight.device
        self.lora_A = nn.ParameterList(
            [nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=torch.float32)) for _ in range(n)])
        self.lora_B = nn.ParameterList(
            [nn.Parameter(torch.zeros(rank, self.out_features, device=device, dtype=torch.float32)) for _ in range(n)])
        with torch.no_grad():
            for a in self.lora_A:  # exactly as peft initialises one lora_A (fan_in = in)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.routing: Routing | None = None

    def adapter(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r, in), B (r, out)) of one adapter, e.g. `adapter("emotion.awe")`: its own parameters."""
        if name not in self.adapters:
            raise KeyError(f"no adapter {name!r}; this layer has {list(self.adapters)}")
        i = self.adapters.index(name)
        return self.lora_A[i], self.lora_B[i]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}, adapters={len(self.adapters)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        routing = self.routing
        if routing is None:
            if torch._C._current_graph_task_id() != -1 and torch.is_grad_enabled():
                # A recompute during backward (gradient checkpointing) after the routing was cleared would
                # silently drop the adapters from the gradient.
                raise RuntimeError(
                    "HiLoRA layer re-run during backward (gradient checkpointing) with no routing set: keep the routing "
                    "set until backward() is done (call backward inside `with routing(...)`, or use set_routing)")
            return out
        batch = x.shape[0]
        if batch != routing.batch:
            raise ValueError(
                f"HiLoRA routing was set for a batch of {routing.batch} but this layer received a batch of {batch}; pass "
                f"routing weights for the full batch (for classifier-free guidance repeat them: torch.cat([w, w]))")
        if not routing.used:
            return out
        # Only the routed adapters enter the graph: the others get no gradient (see the class docstring).
        a_used = torch.stack([self.lora_A[i] for i in routing.used])  # (U, r, in)
        b_used = torch.stack([self.lora_B[i] for i in routing.used])  # (U, r, out)
        index, weight = (routing.index[:1], routing.weight[:1]) if routing.shared else (routing.index, routing.weight)
        n, k = index.shape
        flat = index.reshape(-1).to(a_used.device)  # a no-op unless the UNet moved after set_routing
        a = a_used.index_select(0, flat).reshape(n, k * self.rank, self.in_features)  # (n, K*r, in)
        b = b_used.index_select(0, flat).reshape(n, k * self.rank, self.out_features)  # (n, K*r, out)
        if not (routing.unit and self.scale == 1.0):
            b = b * (weight.to(b) * self.scale).repeat_interleave(self.rank, dim=1)[:, :, None]
        h = x if torch.is_autocast_enabled(x.device.type) else x.to(a.dtype)
        if routing.shared:  # one adapter set for the whole batch: plain matmuls, no batch dimension
            delta = F.linear(h, a[0]) @ b[0]  # (..., K*r) @ (K*r, out)
        else:
            h = h.reshape(batch, -1, self.in_features)  # (B, N, in)
            h = torch.bmm(h, a.transpose(1, 2).to(h.dtype))  # (B, N, K*r)
            delta = torch.bmm(h, b.to(h.dtype)).reshape(out.shape)  # (B, ..., out)
        return out + delta.to(out.dtype)


def adapter_table(emotions: Sequence[str], emotion_loras: bool = True, polarity_loras: bool = True) -> tuple[str, ...]:
    """Names of a layer's adapters in table order: "emotion.<name>" for each emotion, then "polarity.<name>"."""
    return (tuple(f"emotion.{e}" for e in emotions) if emotion_loras else ()) + \
        (tuple(f"polarity.{p}" for p in POLARITIES) if polarity_loras else ())


def _unwrap(model: nn.Module) -> nn.Module:
    """The UNet inside DDP / accelerate / torch.compile wrappers, so module names match the bare UNet's."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def hilora_layers(unet: nn.Module) -> Iterator[tuple[str, HiLoRALinear]]:
    """(name, layer) for every HiLoRA layer of the UNet, names relative to the bare UNet."""
    for name, module in _unwrap(unet).named_modules():
        if isinstance(module, HiLoRALinear):
            yield name, module


def _first_layer(unet: nn.Module) -> HiLoRALinear:
    for _, layer in hilora_layers(unet):
        return layer
    raise ValueError("this UNet has no HiLoRA layers: call add_hilora(unet, emotions) first")


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def add_hilora(unet: nn.Module, emotions: Sequence[str], rank: int = 4, alpha: float | None = None,
               target_modules: Sequence[str] = DEFAULT_TARGETS, emotion_loras: bool = True,
               polarity_loras: bool = True) -> list[str]:
    """Replace every matching `nn.Linear` of the UNet's transformer blocks by a `HiLoRALinear`; return their names.

    `emotions` is a subset of EMOTIONS (stored in EmoSet order); `target_modules` match by name suffix (e.g. `to_q`,
    `attn1.to_q`, `ff.net.2`). Every UNet parameter is frozen; the new adapters are the only trainable ones.
    """
    emotions = check_emotions(emotions)
    if rank < 1:
        raise ValueError(f"HiLoRA rank must be >= 1; got {rank}")
    if not (emotion_loras or polarity_loras):
        raise ValueError("emotion_loras and polarity_loras are both False: HiLoRA would add nothing; skip add_hilora")
    model = _unwrap(unet)
    if any(True for _ in hilora_layers(model)):
        raise ValueError("this UNet already has HiLoRA layers")
    alpha = float(rank if alpha is None else alpha)
    model.requires_grad_(False)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and ".transformer_blocks." in f".{name}" and _matches(name, target_modules)]
    if not names:
        raise ValueError(f"no nn.Linear inside a transformer block matches target_modules {list(target_modules)}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = HiLoRALinear(parent.get_submodule(child), emotions, rank, alpha, emotion_loras, polarity_loras)
        setattr(parent, child, layer)  # nn.Sequential/ModuleList children are named "0", "1": setattr works
    return names


def make_routing(layer: HiLoRALinear, emotion_weights: torch.Tensor | None,
                 polarity_weights: torch.Tensor | None = None) -> Routing | None:
    """Validate per-sample weights, place them on the layer's adapter table and keep each row's non-zero entries."""
    if emotion_weights is None and polarity_weights is None:
        return None
    emotions = layer.emotions
    if emotion_weights is not None:
        emotion_weights = _check_weights(emotion_weights, len(emotions), "emotion_weights", f"emotions {list(emotions)}")
        if polarity_weights is None:
            to_polarity = torch.tensor([[float(polarity_of(e) == p) for p in POLARITIES] for e in emotions])  # (E, 2)
            polarity_weights = emotion_weights @ to_polarity.to(emotion_weights)  # (B, 2)
    if polarity_weights is not None:
        polarity_weights = _check_weights(polarity_weights, len(POLARITIES), "polarity_weights",
                                          f"polarities {list(POLARITIES)}")
    if emotion_weights is not None and polarity_weights.shape[0] != emotion_weights.shape[0]:
        raise ValueError(f"emotion_weights has {emotion_weights.shape[0]} rows but polarity_weights has "
                         f"{polarity_weights.shape[0]}")
    batch = polarity_weights.shape[0]
    columns = []  # (B, 1) per adapter of the table, zero where the caller routed nothing
    for name in layer.adapters:
        kind, _, label = name.partition(".")
        w, names = (emotion_weights, emotions) if kind == "emotion" else (polarity_weights, POLARITIES)
        columns.append(w[:, names.index(label)] if w is not None else torch.zeros(batch))
    table = torch.stack(columns, dim=1)  # (B, n)
    k = int((table != 0).sum(dim=1).max())
    index = table.abs().topk(k, dim=1).indices  # (B, K), into the layer's adapters
    weight = table.gather(1, index)  # (B, K)
    used = tuple(int(i) for i in torch.nonzero(table.abs().sum(0)).flatten())  # adapters with a non-zero weight
    if used:  # padding (weight 0) points at a used adapter: an unrouted one must not enter the graph
        index = torch.where(weight != 0, index, used[0])
        position = torch.full((table.shape[1],), -1, dtype=torch.long)
        position[list(used)] = torch.arange(len(used))
        index = position[index]  # (B, K), into `used`
    shared = bool((table == table[:1]).all())
    return Routing(batch, used, index, weight, shared=shared, unit=bool((weight == 1).all()))


def _check_weights(w: torch.Tensor, width: int, what: str, names: str) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[1] != width:
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"{what} must be a tensor of shape (batch, {width}) with columns {names}; got {shape}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{what} contains NaN or inf")
    return w.detach().float().cpu()


def set_routing(unet: nn.Module, emotion_weights: torch.Tensor | None,
                polarity_weights: torch.Tensor | None = None) -> None:
    """Route each sample of the next forward passes to its adapters.

    emotion_weights (B, E) with columns in the order of the emotions given to `add_hilora`; polarity_weights (B, 2)
    (positive, negative), or None to sum the emotion weights per polarity. A one-hot row is exactly Eq. 3 (only
    that emotion's and its polarity's LoRA act); a convex row mixes the adapters' updates, sum_j w_j dW_j (fusion);
    a zero row leaves that sample on the base weights. The UNet's batch must equal B: under classifier-free
    guidance pass weights for the doubled batch (e.g. torch.cat([w, w])); a mismatch raises. Keep the routing set
    until backward() has run when gradient checkpointing is on (the forward is recomputed then).
    """
    first = _first_layer(unet)
    routing = make_routing(first, emotion_weights, polarity_weights)
    if routing is not None:  # moved once here, not in every layer's forward
        device = first.weight.device
        routing = replace(routing, index=routing.index.to(device), weight=routing.weight.to(device))
    for _, layer in hilora_layers(unet):
        layer.routing = routing


def clear_routing(unet: nn.Module) -> None:
    """No adapter acts: every HiLoRA layer computes exactly its frozen base layer."""
    for _, layer in hilora_layers(unet):
        layer.routing = None


@contextmanager
def routing(unet: nn.Module, emotion_weights: torch.Tensor | None, polarity_weights: torch.Tensor | None = None):
    """`set_routing` for the duration of a `with` block, then `clear_routing`."""
    set_routing(unet, emotion_weights, polarity_weights)
    try:
        yield unet
    finally:
        clear_routing(unet)


def one_hot_weights(unet: nn.Module, labels: Sequence[str] | torch.Tensor) -> torch.Tensor:
    """(B, E) one-hot emotion weights from emotion names or indices into the HiLoRA emotion list."""
    emotions = _first_layer(unet).emotions
    if isinstance(labels, torch.Tensor):
        index = labels.long().cpu()
    else:
        missing = [e for e in labels if e not in emotions]
        if missing:
            raise ValueError(f"emotion(s) {missing} have no HiLoRA adapter; this UNet has {list(emotions)}")
        index = torch.tensor([emotions.index(e) for e in labels])
    return F.one_hot(index, len(emotions)).float()


def hilora_parameters(unet: nn.Module) -> list[nn.Parameter]:
    """Every trainable HiLoRA parameter: lora_A[i] and lora_B[i] of every adapter of every layer."""
    return [p for _, layer in hilora_layers(unet) for side in (layer.lora_A, layer.lora_B) for p in side]


def hilora_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """Adapters in peft's layout, one key per adapter and side.

    `<module>.emotion.<name>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r); `<module>.polarity.<name>...`.
    The LoRA scale (alpha / r) is not folded in; `hilora_config` gives rank and alpha.
    """
    state = {}
    for name, layer in hilora_layers(unet):
        for i, adapter in enumerate(layer.adapters):
            state[f"{name}.{adapter}.lora_A.weight"] = layer.lora_A[i].detach().clone()  # (r, in)
            state[f"{name}.{adapter}.lora_B.weight"] = layer.lora_B[i].detach().t().contiguous()  # (out, r)
    return state


def hilora_config(unet: nn.Module) -> dict:
    """What `add_hilora` needs to rebuild these layers: emotions, rank, alpha, targets and which adapters exist."""
    names = [name for name, _ in hilora_layers(unet)]
    first = _first_layer(unet)
    return {"emotions": list(first.emotions), "rank": first.rank, "alpha": first.alpha, "target_modules": names,
            "emotion_loras": any(a.startswith("emotion.") for a in first.adapters),
            "polarity_loras": any(a.startswith("polarity.") for a in first.adapters)}


def load_hilora_state_dict(unet: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load adapters saved by `hilora_state_dict` (strict: every key must match, shapes included)."""
    expected = {k: v.shape for k, v in hilora_state_dict(unet).items()}
    emotions = _first_layer(unet).emotions
    saved = sorted({k.split(".emotion.")[1].split(".")[0] for k in state_dict if ".emotion." in k})
    if saved and saved != sorted(emotions):
        raise ValueError(f"emotion-set mismatch: the state dict has adapters for {saved}, this UNet for {list(emotions)}")
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(f"HiLoRA state dict does not match this UNet: {len(missing)} missing key(s) {missing[:3]}, "
                         f"{len(unexpected)} unexpected key(s) {unexpected[:3]}")
    wrong = [f"{k}: {tuple(state_dict[k].shape)} != {tuple(s)}" for k, s in expected.items() if state_dict[k].shape != s]
    if wrong:
        raise ValueError(f"HiLoRA state dict shapes do not match (rank or layer size differ): {wrong[:3]}")
    with torch.no_grad():
        for name, layer in hilora_layers(unet):
            for i, adapter in enumerate(layer.adapters):
                layer.lora_A[i].copy_(state_dict[f"{name}.{adapter}.lora_A.weight"])
                layer.lora_B[i].copy_(state_dict[f"{name}.{adapter}.lora_B.weight"].t())
