"""Training-step time of CoEmoGen three ways on the same batch, steps interleaved, medians:
(a) today's uncached step: VAE encoder + CLIP image tower + caption text encoder every step, then the method;
(b) the cached step: latent mean/std, image tokens and caption embedding read from a real disk cache (emotrain/cache_shards.py,
    DataLoader + collate included), a fresh latent draw, then the method;
(c) the method's limit: mapper + visual-perception encoder + text encoder with the emotion token (with grad) + HiLoRA
    UNet forward/backward + loss + AdamW step, inputs already in memory.

Default: the mid-size UNet of hilora_step.py (64/128/256, 32x32 latents, 256 px images) on CPU (fp32, 1 thread, process
CPU time), with a VAE, CLIP vision tower and text encoder whose forward FLOPs stand to the UNet's as SD 1.5's do (the
FLOP table printed first, counted on the meta device, shows both). `--full`: SD 1.5 sizes at 512 px on a CUDA GPU (bf16),
also steps/s, images/s and peak memory at batch 1 and 8; `--dry-run` builds the full-size models on the meta device and
runs one step of each variant at mid-size on CPU (no GPU needed). `--switches` also times channels-last and batch 1 vs
B (`--compile`: torch.compile too).

    python benchmarks/train_step.py                 # CPU: a few minutes on a busy 2-core machine
    python benchmarks/train_step.py --full          # GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hilora_step import build_unet  # noqa: E402 - the same mid-size / SD 1.5 UNet

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
PROMPT = "<emotion>"


def build_vae(full: bool):
    """SD 1.5's VAE (128/256/512/512, 2 layers per block); mid: 32/64/96/96, 1 layer per block."""
    from diffusers import AutoencoderKL

    widths = (128, 256, 512, 512) if full else (32, 64, 96, 96)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=widths,
                         layers_per_block=2 if full else 1,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         norm_num_groups=32, sample_size=512 if full else 256)


def build_vision(full: bool):
    """CLIP ViT-L/14 at 224 px (1024 wide, 24 layers, 257 tokens); mid: 128 wide, 8 layers, same 257 tokens."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    hidden, layers = (1024, 24) if full else (128, 8)
    cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                           num_attention_heads=16 if full else 4, image_size=224, patch_size=14)
    return CLIPVisionModel(cfg)


def build_text(full: bool, vocab: int):
    """SD 1.5's text encoder (CLIP-L text: 768 wide, 12 layers, 77 tokens) and L_SEM's 768 -> 768 text projection;
    mid: 96 wide, 4 layers, then a frozen linear map to the mid UNet's 768-wide cross-attention (the only way its FLOPs
    stay in SD 1.5's proportion: one 768-wide layer alone would cost a fifth of the mid UNet)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    hidden, layers = (768, 12) if full else (96, 4)
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=12 if full else 4, max_position_embeddings=77, bos_token_id=vocab - 2,
                         eos_token_id=vocab - 1)
    to_unet = torch.nn.Identity() if full else torch.nn.Linear(hidden, 768, bias=False)
    return CLIPTextModel(cfg), torch.nn.Linear(hidden, hidden, bias=False), to_unet


def forward_flops(full: bool) -> dict[str, float]:
    """Forward GFLOPs per image of each model, counted on the meta device (nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from emocurate.core.tiny import clip_tokenizer

    size = 512 if full else 256
    out = {}
    with torch.device("meta"):
        unet, vae, vision = build_unet(full), build_vae(full), build_vision(full)
        text, _, to_unet = build_text(full, len(clip_tokenizer()))
        runs = {
            "UNet": lambda: unet(torch.randn(1, 4, size // 8, size // 8), torch.tensor([10]), torch.randn(1, 77, 768)),
            "VAE encoder": lambda: vae.encode(torch.randn(1, 3, size, size)),
            "CLIP image tower": lambda: vision(pixel_values=torch.randn(1, 3, 224, 224)),
            "text encoder": lambda: to_unet(text(input_ids=torch.zeros(1, 77, dtype=torch.long)).last_hidden_state),
        }
        for name, run in runs.items():
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                run()
            out[name] = counter.get_total_flops() / 1e9
    return out


class Models:
    """Frozen encoders + UNet with HiLoRA, trained mapper + VPE, the optimizer, on one device."""

    def __init__(self, full: bool, device, dtype, emotions, rank: int = 4, channels_last: bool = False):
        from diffusers import DDPMScheduler

        from emocurate.core.tiny import clip_tokenizer
        from emotrain.model.conditioning import build_emotion_modules
        from emotrain.model.hilora import add_hilora, hilora_parameters

        self.tokenizer = clip_tokenizer()
        self.unet, self.vae, self.vision = build_unet(full), build_vae(full), build_vision(full)
        self.text, self.projection, self.to_unet = build_text(full, len(self.tokenizer))
        self.scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        for m in (self.unet, self.vae, self.vision, self.text, self.projection, self.to_unet):
            m.requires_grad_(False)
            m.to(device, dtype)
        self.vae.eval()
        self.vision.eval()
        add_hilora(self.unet, emotions, rank=rank, target_modules=tuple(TARGETS))
        adapters = hilora_parameters(self.unet)
        for p in adapters:
            p.data = p.data.float()
            p.requires_grad_(True)
        text_dim = self.text.config.hidden_size
        self.mapper, self.encoder = build_emotion_modules(len(emotions), text_dim, self.vision.config.hidden_size, 512,
                                                          768, "onehot")
        self.mapper.to(device)
        self.encoder.to(device)
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self.unet.train()
        self.optimizer = torch.optim.AdamW([*self.mapper.parameters(), *self.encoder.parameters(), *adapters], lr=1e-4)
        self.device, self.dtype, self.emotions = device, dtype, emotions


def method(m: Models, latents, tokens, caption, onehot, amp) -> None:
    """(c): what CoEmoGen must compute each step."""
    import torch.nn.functional as F

    from emotrain.model.conditioning import encode_with_emotion, semantic_loss
    from emotrain.model.hilora import set_routing

    noise = torch.randn_like(latents, memory_format=torch.contiguous_format)
    t = torch.randint(0, 1000, (latents.shape[0],), device=latents.device)
    noisy = m.scheduler.add_noise(latents, noise, t)
    with torch.autocast(m.device.type, dtype=m.dtype, enabled=amp):
        e_v = m.encoder(m.mapper(onehot), tokens)
        condition, pooled = encode_with_emotion(m.text, m.tokenizer, e_v, PROMPT)
        set_routing(m.unet, onehot)
        pred = m.unet(noisy, t, m.to_unet(condition)).sample
        loss = F.mse_loss(pred.float(), noise.float()) + semantic_loss(m.projection(pooled), caption)
    loss.backward()
    m.optimizer.step()
    m.optimizer.zero_grad(set_to_none=True)


def uncached(m: Models, batch: dict, onehot, amp) -> None:
    """(a): today's step: the three frozen encoders, then the method."""
    from emotrain.model.conditioning import image_tokens

    with torch.no_grad():
        latents = m.vae.encode(batch["pixel_values"]).latent_dist.sample() * 0.18215
        tokens = image_tokens(m.vision, batch["clip_pixel_values"])
        caption = m.projection(m.text(input_ids=batch["caption_ids"]).pooler_output)
    method(m, latents, tokens, caption, onehot, amp)


def cached(m: Models, loader_iter, onehot, amp) -> None:
    """(b): a batch from the disk cache (read + collate + host-to-device), a fresh latent draw, then the method."""
    from emotrain.cache_shards import sample_latents

    batch = next(loader_iter)
    mean, std, tokens, caption = (batch[k].to(m.device, m.dtype, non_blocking=True)
                                  for k in ("latent_mean", "latent_std", "image_tokens", "caption_embeds"))
    method(m, sample_latents(mean, std) * 0.18215, tokens, caption, onehot, amp)


class Rows:
    """Stands in for emotrain.data.TrainingSet in the precompute: random pixels, CLIP pixels and caption ids per row."""

    def __init__(self, n: int, size: int, tokenizer):
        gen = torch.Generator().manual_seed(1)
        self.pixels = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
        self.clip = torch.randn(n, 3, 224, 224, generator=gen)
        ids = tokenizer("a quiet harbour at dusk with small boats", padding="max_length", max_length=77,
                        truncation=True, return_tensors="pt").input_ids[0]
        self.ids = ids.repeat(n, 1)
        self.emotion_index = [i % 8 for i in range(n)]

    def __getitem__(self, key):
        row = int(key[0])
        return {"pixel_values": self.pixels[row], "clip_pixel_values": self.clip[row], "caption_ids": self.ids[row],
                "emotion": self.emotion_index[row]}

    def __len__(self) -> int:
        return len(self.ids)


def build_cache(m: Models, rows: Rows, folder: Path, batch: int, size: int):
    """A real disk cache of `rows` written by emotrain.cache_shards.precompute, and a DataLoader over it in training order."""
    from emotrain import cache, cache_shards
    from emotrain.data import collate

    layout = cache.Layout((4, size // 8, size // 8), (257, m.vision.config.hidden_size), m.projection.out_features,
                          (False,))
    plan = cache.Plan("disk", layout, folder)
    enc = cache_shards.Encoders(m.vae, m.vision, m.text, m.projection, m.device, m.dtype)
    keys = list(range(len(rows)))
    cache_shards.precompute(rows, keys, plan, enc, {"benchmark": True}, batch_size=batch,
                            dtype="fp32" if m.dtype == torch.float32 else "fp16")
    cache_shards.finish(plan, keys)
    served = cache_shards.CachedTrainingSet(rows, cache_shards.FeatureCache(keys, layout, folder=folder))

    def forever():
        while True:
            yield from torch.utils.data.DataLoader(served, batch_size=batch, collate_fn=collate,
                                                   sampler=[(i, False) for i in keys], pin_memory=m.device.type == "cuda")
    return forever()


def timed(fn, device, clock, times, wall):
    if device.type == "cuda":
        torch.cuda.synchronize()
    w, c = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    w, c = time.perf_counter() - w, time.process_time() - c
    wall.append(w)
    times.append(c if clock == "cpu" else w)


def run_variants(variants: dict, steps: int, warmup: int, device, clock) -> dict[str, float]:
    """Interleaved steps (who goes first rotates); median time per variant."""
    times = {k: [] for k in variants}
    walls = {k: [] for k in variants}
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    names = list(variants)
    for i in range(steps):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            timed(variants[name], device, clock, times[name], walls[name])
        print(f"  step {i + 1}/{steps}: " + ", ".join(f"{k} {times[k][-1] * 1e3:.0f} ms" for k in names), flush=True)
    for k in names:
        q = statistics.quantiles(times[k], n=4) if len(times[k]) > 1 else times[k] * 3
        print(f"  {k:28s} {statistics.median(times[k]) * 1e3:8.1f} ms/step (quartiles {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f}; "
              f"wall median {statistics.median(walls[k]) * 1e3:.1f} ms)")
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    from emocurate.core.emotions import EMOTIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="SD 1.5 sizes, 512 px, bf16, CUDA")
    parser.add_argument("--dry-run", action="store_true", help="full-size models on the meta device (FLOPs), then one "
                        "step of each variant at mid-size on CPU: checks every path but the GPU's")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 8 CPU, 30 full)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--switches", action="store_true", help="also time channels-last and batch 1 vs B on step (c)")
    parser.add_argument("--compile", action="store_true", help="with --switches: also torch.compile the UNet (on CPU the "
                        "compile alone takes many minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None)
    args = parser.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    mid, full = forward_flops(False), forward_flops(True)
    print("forward GFLOPs per image (meta-device count)   mid-size   SD 1.5 (512 px)   ratio to its UNet: mid / SD 1.5")
    for name in mid:
        print(f"  {name:18s} {mid[name]:24.1f} {full[name]:14.1f}          {mid[name] / mid['UNet']:.2f} / "
              f"{full[name] / full['UNet']:.2f}")
    if args.dry_run:  # every code path but the GPU's, quickly: not a measurement
        print("dry run: the full-size models build (meta device); one step of each variant at mid-size on CPU, batch 2")
        args.full, args.steps, args.warmup, args.batch = False, 1, 0, 2

    device = torch.device("cuda" if args.full else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: --full needs one (--dry-run checks the code paths on CPU)")
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    if device.type == "cpu" or args.threads:
        torch.set_num_threads(args.threads or 1)
    dtype = torch.bfloat16 if args.full else torch.float32
    amp = args.full
    steps = args.steps or (30 if args.full else 8)
    size = 512 if args.full else 256
    torch.manual_seed(0)
    sizes = [1, 8] if args.full else [args.batch]
    results = {}
    for batch_size in sizes:
        emotions = list(EMOTIONS)
        m = Models(args.full, device, dtype, emotions)
        onehot = torch.nn.functional.one_hot(torch.arange(batch_size) % len(emotions), len(emotions)).float().to(device)
        rows = Rows(batch_size * 4, size, m.tokenizer)
        batch = {k: v.to(device, dtype if v.is_floating_point() else None) for k, v in
                 {"pixel_values": rows.pixels[:batch_size], "clip_pixel_values": rows.clip[:batch_size],
                  "caption_ids": rows.ids[:batch_size]}.items()}
        with tempfile.TemporaryDirectory() as tmp:
            data = build_cache(m, rows, Path(tmp) / "cache", batch_size, size)
            first = next(data)
            inputs = {k: first[k].to(device, dtype) for k in ("latent_mean", "latent_std", "image_tokens", "caption_embeds")}
            from emotrain.cache_shards import sample_latents

            latents = sample_latents(inputs["latent_mean"], inputs["latent_std"]) * 0.18215
            variants = {
                "(a) uncached (today)": lambda: uncached(m, batch, onehot, amp),
                "(b) cached": lambda: cached(m, data, onehot, amp),
                "(c) method limit": lambda: method(m, latents, inputs["image_tokens"], inputs["caption_embeds"], onehot,
                                                   amp),
            }
            print(f"device {device}, threads {torch.get_num_threads()}, {'SD 1.5' if args.full else 'mid-size'} models, "
                  f"{size} px, batch {batch_size} (mixed emotions), {'bf16 + autocast' if amp else 'fp32'}, "
                  f"{clock} clock")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            med = run_variants(variants, steps, args.warmup, device, clock)
            results[batch_size] = med
            for k, v in med.items():
                print(f"  {k:28s} {1 / v:6.2f} steps/s  {batch_size / v:7.2f} images/s")
            if device.type == "cuda":
                print(f"  peak GPU memory (all three variants' models): {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
            if args.switches:
                switches(m, args, batch, inputs, latents, onehot, amp, device, clock, steps, med["(c) method limit"])
        del m
    med = results[sizes[-1]]
    print(f"train step (uncached)/method limit time ratio: {med['(a) uncached (today)'] / med['(c) method limit']:.2f}")
    print(f"train step (cached)/method limit time ratio: {med['(b) cached'] / med['(c) method limit']:.2f} "
          f"(uncached: {med['(a) uncached (today)'] / med['(c) method limit']:.2f})")


def switches(m, args, batch, inputs, latents, onehot, amp, device, clock, steps, limit):
    """channels-last and torch.compile of the UNet, and batch 1 vs B, each on the method's step (c)."""
    one = {k: v[:1] for k, v in inputs.items()}
    variants = {"(c) batch 1": lambda: method(m, latents[:1], one["image_tokens"], one["caption_embeds"], onehot[:1], amp)}
    print("switches (on step (c)):")
    med = run_variants(variants, steps, args.warmup, device, clock)
    print(f"  per-image time batch {len(latents)} / batch 1: {limit / len(latents) / med['(c) batch 1']:.2f}")
    m.unet.to(memory_format=torch.channels_last)
    med = run_variants({"(c) channels-last": lambda: method(m, latents, inputs["image_tokens"], inputs["caption_embeds"],
                                                             onehot, amp)}, steps, args.warmup, device, clock)
    print(f"  channels-last / default layout: {med['(c) channels-last'] / limit:.2f}")
    try:
        import bitsandbytes  # noqa: F401
        print("  8-bit AdamW: bitsandbytes installed; time it on a GPU (train with optim.adam_8bit=true)")
    except ImportError:
        print("  8-bit AdamW: bitsandbytes not installed here; not timed")
    m.unet.to(memory_format=torch.contiguous_format)
    if not args.compile:
        print("  torch.compile: not timed (add --compile)")
        return
    started = time.perf_counter()
    m.unet.compile()
    try:
        method(m, latents, inputs["image_tokens"], inputs["caption_embeds"], onehot, amp)  # compiles
    except Exception as err:  # noqa: BLE001 - report and go on: the switch is optional
        print(f"  torch.compile failed here: {type(err).__name__}: {str(err)[:200]}")
        return
    print(f"  torch.compile: first step {time.perf_counter() - started:.0f} s (compiling)")
    med = run_variants({"(c) compiled UNet": lambda: method(m, latents, inputs["image_tokens"], inputs["caption_embeds"],
                                                             onehot, amp)}, steps, 1, device, clock)
    print(f"  compiled / eager: {med['(c) compiled UNet'] / limit:.2f}")


if __name__ == "__main__":
    main()
