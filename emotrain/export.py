"""Export one emotion of a HiLoRA UNet as a standard LoRA (diffusers or kohya keys) plus a textual-inversion embedding.

The LoRA concatenates the polarity and emotion adapters along rank with the scale folded in, so it equals Eq. 3
exactly in any tool that applies W + lora_B @ lora_A * alpha / rank. It does not compute the embedding itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping

import torch

from emocurate.core.emotions import polarity_of
from emotrain.model.hilora import HiLoRALinear, hilora_layers

Format = Literal["diffusers", "kohya"]
FORMATS: tuple[str, ...] = ("diffusers", "kohya")
DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _mix(layer: HiLoRALinear, emotion: str | Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Emotion and polarity weights of a single emotion (1.0 each) or a fusion mix (polarity = summed weights)."""
    mix = {emotion: 1.0} if isinstance(emotion, str) else {e: float(w) for e, w in emotion.items() if float(w) != 0.0}
    if not mix:
        raise ValueError("emotion mix is empty (or all weights are zero)")
    missing = [e for e in mix if e not in layer.emotions]
    if missing:
        raise ValueError(f"emotion(s) {missing} have no HiLoRA adapter; this model has {list(layer.emotions)}")
    polarity: dict[str, float] = {}
    for e, w in mix.items():
        polarity[polarity_of(e)] = polarity.get(polarity_of(e), 0.0) + w
    return mix, polarity


def layer_lora(layer: HiLoRALinear, emotion: str | Mapping[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A (R, in), lora_B (out, R)) with lora_B @ lora_A == the layer's routed update (R = r per adapter used)."""
    mix, polarity = _mix(layer, emotion)
    routed = {**{f"polarity.{p}": w for p, w in polarity.items()}, **{f"emotion.{e}": w for e, w in mix.items()}}
    downs, ups = [], []
    for adapter, w in routed.items():  # polarity first, then emotion: lora_A = cat([A_p, A_e])
        if w != 0.0 and adapter in layer.adapters:  # absent when add_hilora had emotion_loras/polarity_loras off
            A, B = layer.adapter(adapter)
            downs.append(A.detach().float())  # (r, in)
            ups.append(B.detach().float().t() * (w * layer.scale))  # (out, r), scale and mix weight folded in
    return torch.cat(downs, dim=0), torch.cat(ups, dim=1)


def emotion_lora_state_dict(unet, emotion: str | Mapping[str, float], fmt: Format = "diffusers",
                            dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """One standard LoRA for an emotion (or a fusion mix {emotion: weight}) of a HiLoRA UNet.

    diffusers: `unet.<module>.lora_A.weight` / `.lora_B.weight` (no alpha: diffusers then uses alpha = rank, scale 1).
    kohya: `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` / `.alpha` (= rank, scale 1),
    the keys sd-scripts writes for SD 1.x (it trains on the diffusers UNet naming).
    """
    _check_format(fmt)
    state = {}
    for name, layer in hilora_layers(unet):
        down, up = layer_lora(layer, emotion)
        if fmt == "diffusers":
            state[f"unet.{name}.lora_A.weight"] = down.to(dtype).contiguous()
            state[f"unet.{name}.lora_B.weight"] = up.to(dtype).contiguous()
        else:
            key = "lora_unet_" + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down.to(dtype).contiguous()
            state[f"{key}.lora_up.weight"] = up.to(dtype).contiguous()
            state[f"{key}.alpha"] = torch.tensor(float(down.shape[0]), dtype=dtype)
    if not state:
        raise ValueError("this UNet has no HiLoRA layers: nothing to export")
    return state


def save_lora(state_dict: Mapping[str, torch.Tensor], out_dir: str | Path, fmt: Format = "diffusers",
              name: str = "emotion_lora") -> Path:
    """Write `pytorch_lora_weights.safetensors` (diffusers) or `<name>.safetensors` (kohya, with sd-scripts metadata)."""
    from safetensors.torch import save_file

    _check_format(fmt)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt"}
    if fmt == "kohya":
        ranks = sorted({int(v.shape[0]) for k, v in state_dict.items() if k.endswith(".lora_down.weight")})
        metadata.update({"ss_network_module": "networks.lora", "ss_network_dim": str(ranks[-1]),
                         "ss_network_alpha": str(ranks[-1]), "ss_base_model_version": "sd_v1"})
    path = out_dir / (DIFFUSERS_WEIGHT_NAME if fmt == "diffusers" else f"{name}.safetensors")
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def save_textual_inversion(path: str | Path, token: str, embeddings: torch.Tensor) -> Path:
    """Write a textual-inversion file {token: (n, D)} as diffusers' `load_textual_inversion` and A1111 read it.

    With n > 1 diffusers adds the tokens `token`, `token_1`, ... and expands `token` in prompts to all of them.
    """
    from safetensors.torch import save_file

    if embeddings.ndim == 1:
        embeddings = embeddings[None]
    if embeddings.ndim != 2 or embeddings.shape[0] < 1:
        raise ValueError(f"embeddings must have shape (n, D); got {tuple(embeddings.shape)}")
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token must be a non-empty word without spaces, e.g. '<awe>'; got {token!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({token: embeddings.detach().float().cpu().contiguous()}, str(path), metadata={"format": "pt"})
    return path


README = """# CoEmoGen emotion export: {title}

A standard LoRA ({fmt} format, rank {rank}) equal to the polarity and emotion HiLoRA adapters of this emotion, and a
textual-inversion embedding for the emotion token `{token}` ({n} vector(s)). Load them into the Stable Diffusion 1.5
pipeline the model was trained on, with the sampler `emotrain generate` uses ({sampler}):

```python
import torch
from diffusers import {scheduler_class}, StableDiffusionPipeline

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
pipe = StableDiffusionPipeline.from_pretrained({base!r}{revision}, torch_dtype=dtype).to(device)
pipe.scheduler = {scheduler_class}.from_config(pipe.scheduler.config)
pipe.load_lora_weights({folder!r}, weight_name={lora_file!r})
pipe.load_textual_inversion({ti_path!r}, token={token!r})
image = pipe({token!r}, num_inference_steps={steps}, guidance_scale={guidance}).images[0]  # the emotion alone
image = pipe({transfer!r}, num_inference_steps={steps}, guidance_scale={guidance}).images[0]  # emotion transfer
image.save("emotion.png")
```

The LoRA's scale (alpha / rank) is 1: keep `cross_attention_kwargs={{"scale": 1.0}}` (the default) to reproduce the
model; like `emotrain generate`, the LoRA then acts on both halves of classifier-free guidance.
{kohya}
"""

KOHYA_TEXT = ("In kohya-format tools (A1111, ComfyUI) load the LoRA file `{lora_file}` at weight 1.0 and the embedding "
              "file `{ti_file}` as `{token}`.")
DIFFUSERS_TEXT = ("`{lora_file}` has diffusers keys. For kohya-format tools (A1111, ComfyUI) export again with "
                  "`emotrain export --format kohya`, which writes `{kohya_file}` (kohya keys) and the same embedding "
                  "`{ti_file}`.")


def export_emotion(unet, emotion: str | Mapping[str, float], token: str, embeddings: torch.Tensor, out_dir: str | Path,
                   fmt: Format = "diffusers", base_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5",
                   base_revision: str | None = None, sampler: Mapping | None = None) -> list[Path]:
    """Write the LoRA, the textual-inversion file `<token>.safetensors` and a README.md into out_dir; return their paths.

    The README's snippet runs as written: `base_model` must be what `from_pretrained` loads (a Hub id, pinned by
    `base_revision`, or a local folder), and `sampler` (emotrain.sampling.sampler_record) names the scheduler, steps
    and guidance to match `emotrain generate` (default: emotrain's sampler)."""
    from emotrain.sampling import DEFAULT_SCHEDULER, SCHEDULERS, describe, sampler_record

    _check_format(fmt)
    if base_model.startswith("tiny:"):
        raise ValueError(f"base_model {base_model!r} is not loadable by diffusers: pass the folder it resolves to")
    sampler = dict(sampler or sampler_record(DEFAULT_SCHEDULER, 30, 7.5))
    title = emotion if isinstance(emotion, str) else "+".join(f"{e}:{w:g}" for e, w in emotion.items())
    state = emotion_lora_state_dict(unet, emotion, fmt)
    stem = "emotion_" + "_".join(title.replace(":", "-").split("+"))
    lora_path = save_lora(state, out_dir, fmt, name=f"{stem}_lora")
    ti_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in token).strip("_") or "emotion"
    ti_path = save_textual_inversion(Path(out_dir) / f"{ti_name}.safetensors", token, embeddings)
    rank = max(int(v.shape[0]) for k, v in state.items() if k.endswith(("lora_A.weight", "lora_down.weight")))
    readme = Path(out_dir) / "README.md"
    n = embeddings.shape[0] if embeddings.ndim == 2 else 1
    folder = Path(out_dir).resolve()
    names = {"lora_file": lora_path.name, "ti_file": ti_path.name, "token": token,
             "kohya_file": f"{stem}_lora.safetensors"}
    kohya = (KOHYA_TEXT if fmt == "kohya" else DIFFUSERS_TEXT).format(**names)
    readme.write_text(README.format(
        title=title, fmt=fmt, rank=rank, n=n, base=base_model,
        revision=f", revision={base_revision!r}" if base_revision else "", folder=folder.as_posix(),
        ti_path=(folder / ti_path.name).as_posix(), scheduler_class=SCHEDULERS[sampler["scheduler"]],
        sampler=describe(sampler["scheduler"], sampler["steps"], sampler["guidance"]), steps=sampler["steps"],
        guidance=sampler["guidance"], transfer=f"a city street, {token}", kohya=kohya, **names))
    return [lora_path, ti_path, readme]
