"""GPU benchmark: CLIP ViT-L/14 scoring images/s and SD 1.5 UNet HiLoRA training steps/s against a plain peft LoRA step.

Random weights (the architecture is what sets the speed); nothing is downloaded. Results are appended to
benchmarks/RESULTS.md with the date and the GPU. It needs CUDA; `--dry-run` runs the same code paths with tiny models on
CPU (a smoke test: its numbers mean nothing and are not written unless --results is given).

    python benchmarks/gpu.py                      # on a GPU machine
    python benchmarks/gpu.py --dry-run            # anywhere, ~10 s
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

RESULTS = Path(__file__).with_name("RESULTS.md")
WARMUP = 2
ROUTED_EMOTIONS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")


def clip_config(tiny: bool):
    """CLIP ViT-L/14 (openai/clip-vit-large-patch14) shapes, or a 32-wide one for --dry-run."""
    from transformers import CLIPConfig

    if tiny:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000,
                    bos_token_id=998, eos_token_id=999, pad_token_id=999)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, vocab_size=49408)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
                  patch_size=14)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)


def unet_config(tiny: bool) -> dict:
    """SD 1.5's UNet (860M parameters, 64x64 latents for 512 px), or diffusers' test-sized one for --dry-run."""
    if tiny:
        return dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, cross_attention_dim=32,
                    attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    return dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64, cross_attention_dim=768,
                attention_head_dim=8)


def timed(fn, steps: int, warmup: int, sync) -> list[float]:
    """Seconds per call of `fn` after `warmup` calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def bench_clip(device, dtype, tiny: bool, batch: int, steps: int, sync) -> dict:
    """Images/s of a batched CLIP score (image + text forward, cosine), inputs already on the device."""
    import torch
    from transformers import CLIPModel

    config = clip_config(tiny)
    model = CLIPModel(config).to(device, dtype).eval()
    size = config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)  # (B, 3, 224, 224)
    tokens = torch.randint(0, config.text_config.vocab_size - 2, (batch, 77), device=device)  # (B, 77)

    def score():
        with torch.no_grad():
            img = model.get_image_features(pixel_values=pixels)
            txt = model.get_text_features(input_ids=tokens)
            img = img if hasattr(img, "shape") else img.pooler_output  # transformers 5 returns an output object
            txt = txt if hasattr(txt, "shape") else txt.pooler_output
            return torch.nn.functional.cosine_similarity(img, txt)  # (B,)

    reset_peak(device)
    times = timed(score, steps, warmup=WARMUP, sync=sync)
    return {"images_per_s": batch / statistics.median(times), "peak_gib": peak_gib(device)}


def build_unet(device, dtype, tiny: bool):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config(tiny)).to(device, dtype)


def train_step_fn(unet, params, device, dtype, batch: int, route=None):
    """One training step (forward + MSE loss + backward + AdamW) on random latents, under autocast."""
    import torch

    cfg = unet.config
    latents = torch.randn(batch, 4, cfg.sample_size, cfg.sample_size, device=device, dtype=dtype)  # (B, 4, 64, 64)
    context = torch.randn(batch, 77, cfg.cross_attention_dim, device=device, dtype=dtype)  # (B, 77, 768)
    timesteps = torch.randint(0, 1000, (batch,), device=device)
    target = torch.randn_like(latents)
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if route is not None:
                route()
            pred = unet(latents, timesteps, encoder_hidden_states=context).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_hilora(device, dtype, tiny: bool, batch: int, steps: int, sync) -> dict:
    """Steps/s of HiLoRA (8 emotion + 2 polarity rank-4 LoRAs, a batch of mixed emotions) on the frozen UNet."""
    from emotrain.model.hilora import add_hilora, hilora_parameters, one_hot_weights, set_routing

    unet = build_unet(device, dtype, tiny)
    add_hilora(unet, ROUTED_EMOTIONS, rank=4)
    params = hilora_parameters(unet)
    labels = [ROUTED_EMOTIONS[i % len(ROUTED_EMOTIONS)] for i in range(batch)]
    weights = one_hot_weights(unet, labels).to(device)  # (B, 8)
    step = train_step_fn(unet, params, device, dtype, batch, route=lambda: set_routing(unet, weights))
    reset_peak(device)
    times = timed(step, steps, warmup=WARMUP, sync=sync)
    return {"steps_per_s": 1 / statistics.median(times), "peak_gib": peak_gib(device),
            "trainable_m": sum(p.numel() for p in params) / 1e6}


def bench_lora(device, dtype, tiny: bool, batch: int, steps: int, sync) -> dict:
    """Steps/s of one plain rank-8 peft LoRA on the same projections of the same frozen UNet (the baseline)."""
    from peft import LoraConfig

    unet = build_unet(device, dtype, tiny)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # trainable adapters in fp32 under autocast, as in diffusers' LoRA training scripts
        p.data = p.data.float()
    step = train_step_fn(unet, params, device, dtype, batch)
    reset_peak(device)
    times = timed(step, steps, warmup=WARMUP, sync=sync)
    return {"steps_per_s": 1 / statistics.median(times), "peak_gib": peak_gib(device),
            "trainable_m": sum(p.numel() for p in params) / 1e6}


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def report(gpu: str, args, clip: dict, hilora: dict, lora: dict) -> str:
    ratio = lora["steps_per_s"] / hilora["steps_per_s"]
    return "\n".join([
        f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {gpu}{' (dry run, tiny models)' if args.dry_run else ''}",
        "",
        f"- CLIP ViT-L/14 scoring, {args.dtype}, batch {args.clip_batch}: {clip['images_per_s']:.1f} images/s "
        f"(image + text forward and cosine, inputs on device), peak {clip['peak_gib']:.2f} GiB",
        f"- SD 1.5 UNet, 512 px (64x64 latents), {args.dtype}, batch {args.batch} mixed emotions:",
        f"  - HiLoRA (8 emotion + 2 polarity rank-4 LoRAs, {hilora['trainable_m']:.2f}M trainable): "
        f"{hilora['steps_per_s']:.2f} steps/s, peak {hilora['peak_gib']:.2f} GiB",
        f"  - plain peft LoRA rank 8 ({lora['trainable_m']:.2f}M trainable): {lora['steps_per_s']:.2f} steps/s, "
        f"peak {lora['peak_gib']:.2f} GiB",
        f"  - hilora/lora step time ratio: {ratio:.2f}",
        f"- command: python benchmarks/gpu.py {' '.join(sys.argv[1:])}".rstrip(),
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models on CPU: checks the code paths, measures nothing")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--batch", type=int, default=8, help="UNet training batch (mixed emotions)")
    parser.add_argument("--clip-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (after 2 warm-up steps)")
    parser.add_argument("--results", type=Path, default=None, help=f"append here (default {RESULTS.name}; none for --dry-run)")
    args = parser.parse_args(argv)

    import torch

    if args.dry_run:
        device, gpu = torch.device("cpu"), "CPU"
        args.dtype, args.batch, args.clip_batch, args.steps = "float32", 2, 4, 1
        global WARMUP
        WARMUP = 0
        sync = lambda: None  # noqa: E731
    else:
        if not torch.cuda.is_available():
            print("benchmarks/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False here. "
                  "Run it on a GPU machine, or pass --dry-run for a tiny CPU smoke run.", file=sys.stderr)
            return 2
        device, gpu = torch.device("cuda"), torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = True
        sync = torch.cuda.synchronize
    dtype = getattr(torch, args.dtype)
    clip = bench_clip(device, dtype, args.dry_run, args.clip_batch, args.steps, sync)
    hilora = bench_hilora(device, dtype, args.dry_run, args.batch, args.steps, sync)
    lora = bench_lora(device, dtype, args.dry_run, args.batch, args.steps, sync)
    text = report(gpu, args, clip, hilora, lora)
    print(text)
    target = args.results if args.results is not None else (None if args.dry_run else RESULTS)
    if target is not None:
        if not target.exists():
            target.write_text("# Benchmark results\n\nAppended by the scripts in benchmarks/ (newest last).\n\n")
        with target.open("a") as f:
            f.write(text + "\n")
        print(f"appended to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
