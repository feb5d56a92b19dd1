"""Curation throughput: images/s per stage for the local and Ray executors on the same input, and the CLIP-score
stage against a bare batched forward of the same model on the same images (pipeline overhead).

Offline: random photos written to a temporary folder, the demo recipe's tiny models (or `--clip mid`: a random CLIP with
ViT-B/32's vision shapes, where the forward pass, not decoding, dominates as with real models). Last line:
`clip stage/bare forward throughput ratio: X.XX` (target >= 0.90).

    python benchmarks/curate_throughput.py --images 96 --clip mid
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "recipes" / "curate" / "demo.yaml"
STAGES = ("ingest", "classify", "caption", "clip_filter")


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """`n` distinct JPEG photos-like images (smooth colour gradients plus noise), size x size pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 1, size)
    for i in range(n):
        colour = rng.uniform(0, 255, (1, 1, 3))
        arr = ramp[None, :, None] * colour + ramp[:, None, None] * rng.uniform(0, 128) + rng.integers(0, 30, (size, size, 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.jpg", quality=90)
    return folder


def build_mid_clip(folder: Path) -> str:
    """A random CLIP with ViT-B/32's vision tower (224 px, patch 32, 12 x 768) and a 4-layer 256-wide text tower."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from emocurate.core.tiny import clip_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32),
        projection_dim=512,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def stage_rates(stages: dict) -> dict[str, tuple[float, float]]:
    """Per stage, from a build summary: (items/s over the stage's wall time, items/s without model loading)."""
    out = {}
    for stage in STAGES:
        st = stages.get(stage) or {}
        items, seconds, load = st.get("items") or 0, st.get("seconds") or 0.0, st.get("load_s") or 0.0
        out[stage] = (items / seconds if seconds else float("nan"), items / (seconds - load) if seconds > load else float("nan"))
    return out


def clip_stage_vs_bare(run: Path, recipe, repeats: int) -> tuple[float, float, int]:
    """Images/s of the CLIP-score stage's per-shard function (decode, preprocess, tokenize, forward, token counts)
    against the same model's bare batched forward on the same images, pre-processed once and held in memory."""
    import pyarrow as pa
    import torch

    from emocurate.stages import per_shard
    from emocurate.stages.clip_filter import load_scorer
    from emocurate.stages.table import STAGE, rows_with_bytes
    from emocurate.store import shards
    from emocurate.store.manifest import n_ingest_shards

    scorer = load_scorer(recipe.clip_filter)
    batch = recipe.clip_filter.batch_size
    n_shards = n_ingest_shards(run)
    work = []
    for s in range(n_shards):
        table = shards.read_shard(run, STAGE["clip_filter"].folder, s, ["id", "caption"])
        if table is not None and table.num_rows:
            work.append(rows_with_bytes(run, s, table))
    rows = pa.concat_tables(work)
    images = per_shard._images(rows.column("image_bytes").to_pylist())
    captions = rows.column("caption").to_pylist()
    encoder = scorer.encoder
    pixels = [encoder.processor(images=images[i:i + batch], return_tensors="pt")["pixel_values"]
              for i in range(0, len(images), batch)]  # each (B, 3, H, W)
    tokens = [encoder.processor.tokenizer(captions[i:i + batch], padding=True, truncation=True,
                                          max_length=encoder.max_tokens, return_tensors="pt")
              for i in range(0, len(captions), batch)]

    def stage():
        for table in work:
            per_shard.clip_filter_shard(table, scorer, batch)

    def bare():
        with torch.no_grad():
            for px, tok in zip(pixels, tokens):
                img = encoder.model.get_image_features(pixel_values=px.to(encoder.device))
                txt = encoder.model.get_text_features(**tok.to(encoder.device))
                img = img if hasattr(img, "shape") else img.pooler_output
                txt = txt if hasattr(txt, "shape") else txt.pooler_output
                torch.nn.functional.cosine_similarity(img, txt)

    runs = {"stage": stage, "bare": bare}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeats):  # interleaved, so load from other processes on the machine hits both alike
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    stage_rate, bare_rate = (rows.num_rows / statistics.median(times[name]) for name in runs)
    return stage_rate, bare_rate, rows.num_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=96, help="side of the generated JPEGs, pixels")
    parser.add_argument("--clip", choices=["tiny", "mid"], default="tiny", help="tiny:clip, or a random ViT-B/32-shaped CLIP")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each CLIP measurement (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads in this process (0 = torch's default); "
                        "1 is steadier on a machine shared with other jobs")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from emocurate.run import driver as pipeline
    from emocurate.recipe import load_recipe

    work = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    inputs = write_images(work / "images", args.images, args.size)
    clip = "tiny:clip" if args.clip == "tiny" else build_mid_clip(work / "mid-clip")
    overrides = [f"sources=[folder:{inputs}]", f"shard_size={args.shard_size}", f"clip_filter.model={clip}",
                 "classify.min_confidence=0", "clip_filter.batch_size=16"]
    recipe = load_recipe(DEMO, overrides)
    results = {}
    for name in [e.strip() for e in args.executors.split(",") if e.strip()]:
        run = work / f"run-{name}"
        start = time.perf_counter()
        if name not in ("local", "ray"):
            raise SystemExit(f"unknown executor {name!r}: use local and/or ray")
        summary = pipeline.build(recipe, run, publish=False, executor=name)
        results[name] = (time.perf_counter() - start, stage_rates(summary["stages"]))

    print(f"input: {args.images} JPEGs of {args.size}x{args.size} px, shards of {args.shard_size}; "
          f"clip_filter.model={'tiny:clip' if args.clip == 'tiny' else 'random ViT-B/32-shaped CLIP'}; demo recipe's tiny "
          f"classifier and captioner; CPU, torch threads {args.threads or 'default'}")
    print(f"{'images/s':<12}" + "".join(f"{name + ' (all)':>16}{name + ' (no load)':>20}" for name in results))
    for stage in STAGES:
        print(f"{stage:<12}" + "".join(f"{all_:>16.1f}{work:>20.1f}" for _, rates in results.values()
                                       for all_, work in [rates[stage]]))
    print(f"{'wall s':<12}" + "".join(f"{wall:>16.1f}{'':>20}" for wall, _ in results.values()))
    print("(all: the stage's wall time, model loading and, under Ray, actor start-up included; no load: without the "
          "model loading time)")
    run = work / f"run-{next(iter(results))}"
    stage_rate, bare_rate, n = clip_stage_vs_bare(run, recipe, args.repeats)
    print(f"clip score on {n} images, batch {recipe.clip_filter.batch_size}: stage {stage_rate:.1f} images/s "
          f"(decode + preprocess + tokenize + forward), bare forward {bare_rate:.1f} images/s")
    print(f"clip stage/bare forward throughput ratio: {stage_rate / bare_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
