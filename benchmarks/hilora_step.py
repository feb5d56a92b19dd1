"""Training-step time of HiLoRA (8 emotions + 2 polarities, rank 4, batch of 8 mixed emotions) against one plain
rank-8 peft LoRA and against no LoRA, on copies of the same frozen UNet, steps interleaved; prints medians.

Default: a mid-size UNet on CPU (fp32). `--full`: the SD 1.5 UNet architecture (random weights, 64x64 latents, bf16
weights + autocast) on CUDA. "no LoRA" trains one scalar gain on the noisy latents, so backward still runs through
the whole frozen UNet (to conv_in) and the AdamW step exists but is negligible.
On CPU the step time is, by default, the process CPU time of a single-threaded run: on a machine shared with other
jobs it is far steadier than wall time (which is also printed); on an idle machine `--threads 2 --clock wall`.

    python benchmarks/hilora_step.py              # CPU: about 1 min of CPU time, 1-2 min wall on a busy machine
    python benchmarks/hilora_step.py --full       # GPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def build_unet(full: bool):
    from diffusers import UNet2DConditionModel

    if full:  # Stable Diffusion 1.5's UNet config
        return UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        )
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128, 256), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


class Variant:
    """One frozen UNet copy with its trainable parameters, optimiser and per-step routing."""

    def __init__(self, name, unet, params, before_step=None, gain=None):
        self.name, self.unet, self.before_step, self.gain = name, unet, before_step, gain
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2)
        self.n_params = sum(p.numel() for p in params)
        self.times: list[float] = []  # by the chosen clock
        self.wall: list[float] = []


def make_variants(base, emotions, rank):
    from peft import LoraConfig

    from emotrain.model.hilora import add_hilora, hilora_parameters, one_hot_weights, set_routing

    base.requires_grad_(False)
    hi = copy.deepcopy(base)
    add_hilora(hi, emotions, rank=rank, target_modules=TARGETS)
    weights = one_hot_weights(hi, list(emotions))  # (8, 8): every sample a different emotion
    variants = [Variant("hilora", hi, hilora_parameters(hi), before_step=lambda: set_routing(hi, weights))]
    lora = copy.deepcopy(base)
    lora.add_adapter(LoraConfig(r=2 * rank, lora_alpha=2 * rank, init_lora_weights="gaussian", target_modules=TARGETS))
    lora_params = [p for p in lora.parameters() if p.requires_grad]
    for p in lora_params:  # fp32 master weights, like HiLoRA's (diffusers' cast_training_params)
        p.data = p.data.float()
    variants.append(Variant("lora", lora, lora_params))
    plain = copy.deepcopy(base)
    gain = torch.nn.Parameter(torch.ones((), device=next(base.parameters()).device))
    variants.append(Variant("none", plain, [gain], gain=gain))
    return variants


def step(v: Variant, batch, amp_dtype, device):
    latents, t, text, target = batch
    if v.before_step is not None:
        v.before_step()
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        x = latents * v.gain if v.gain is not None else latents
        pred = v.unet(x, t, encoder_hidden_states=text).sample
    loss = torch.nn.functional.mse_loss(pred.float(), target)
    loss.backward()
    v.optimizer.step()
    v.optimizer.zero_grad(set_to_none=True)


def timed(v, batch, amp_dtype, device, clock):
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    step(v, batch, amp_dtype, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    v.wall.append(wall)
    v.times.append(cpu if clock == "cpu" else wall)


def main(argv=None):
    from emocurate.core.emotions import EMOTIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="SD 1.5 UNet, 64x64 latents, bf16, CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 10 CPU, 30 full)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4, help="HiLoRA rank; the plain LoRA gets 2x (same rank per sample)")
    parser.add_argument("--device", default=None, help="default: cuda with --full, else cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 frozen weights + autocast (default: on with --full)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None,
                        help="what a step time is: process CPU time or wall time (default: cpu on CPU, wall on CUDA)")
    args = parser.parse_args(argv)
    steps = args.steps or (30 if args.full else 8)
    device = torch.device(args.device or ("cuda" if args.full else "cpu"))
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    if device.type == "cpu" or args.threads:
        torch.set_num_threads(args.threads or 1)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: --full needs one (or pass --device cpu for a very slow run)")
    bf16 = args.full if args.bf16 is None else args.bf16
    amp_dtype = torch.bfloat16 if bf16 else None
    torch.manual_seed(0)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the "kept in float32" notice on .to(dtype) concerns no module here
    base = build_unet(args.full)
    base.to(device, dtype=torch.bfloat16 if bf16 else torch.float32)
    base.train()
    variants = make_variants(base, EMOTIONS, args.rank)
    del base
    size = 64 if args.full else 32
    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = (torch.randn(args.batch, 4, size, size, generator=gen).to(device),
             torch.randint(0, 1000, (args.batch,), generator=gen).to(device),
             torch.randn(args.batch, 77, 768, generator=gen).to(device),
             torch.randn(args.batch, 4, size, size, generator=gen).to(device))
    print(f"device {device}, threads {torch.get_num_threads()}, UNet {'SD 1.5' if args.full else 'mid-size (64,128,256)'}, "
          f"latents {size}x{size}, batch {args.batch} (emotions {', '.join(EMOTIONS[:args.batch])}), "
          f"{'bf16 weights + autocast' if bf16 else 'fp32'}")
    for v in variants:
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for g in v.optimizer.param_groups for p in g["params"]})
        print(f"  {v.name:7s} trainable params {v.n_params:>10,} ({'/'.join(dtypes)})")
    for _ in range(args.warmup):
        for v in variants:
            step(v, batch, amp_dtype, device)
    for i in range(steps):
        order = variants[i % 3:] + variants[:i % 3]  # rotate who goes first: load spikes spread evenly
        for v in order:
            timed(v, batch, amp_dtype, device, clock)
        print(f"  step {i + 1}/{steps}: " + ", ".join(f"{v.name} {v.times[-1]:.2f}s" for v in variants), flush=True)
    med = {v.name: statistics.median(v.times) for v in variants}
    print(f"median step time ({clock} clock{', 1 thread' if torch.get_num_threads() == 1 else ''}):")
    for v in variants:
        q = statistics.quantiles(v.times, n=4) if len(v.times) > 1 else v.times * 3
        print(f"  {v.name:7s} {med[v.name] * 1e3:8.1f} ms/step  (quartiles {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f}, "
              f"{steps} steps; wall median {statistics.median(v.wall) * 1e3:.1f} ms)")
    print(f"lora/none step time ratio: {med['lora'] / med['none']:.2f}")
    print(f"hilora/none step time ratio: {med['hilora'] / med['none']:.2f}")
    print(f"hilora/lora step time ratio: {med['hilora'] / med['lora']:.2f}")


if __name__ == "__main__":
    main()
