"""Images/s of each `emotrain eval` metric with FULL-SIZE backbones at random init (built in code, nothing downloaded).

Inception-v3 (torchscript, clean-fid's interface), AlexNet LPIPS, ResNet-50 Places365 + ResNet-50 ImageNet, CLIP ViT-L/14
(Sem-D, CLIP score, zero-shot Emo-A): the same shapes and cost as the real weights, so the rates transfer.
    python benchmarks/eval_throughput.py --n 16 --size 512 --device cpu --out /tmp/eval-bench
Each timing includes loading that metric's backbone; FID's includes the Frechet distances (2048-d eigendecompositions).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def build_weights(root: Path) -> dict:
    import torch
    import torchvision
    from torch import nn
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from emocurate.core.tiny import clip_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    out = {}
    if not (root / "inception.pt").exists():
        inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
        trunk = [m for name, m in inception.named_children() if name not in ("dropout", "fc")]

        class Inception(nn.Module):  # clean-fid's interface: `.layers` maps [-1, 1] input to (B, 2048, 1, 1)
            def __init__(self):
                super().__init__()
                self.layers = nn.Sequential(*trunk)

            def forward(self, x):
                return self.layers(x)

        torch.jit.script(Inception().eval()).save(str(root / "inception.pt"))
    out["inception"] = root / "inception.pt"
    if not (root / "alexnet.pth").exists():
        feats = torchvision.models.alexnet(weights=None).features.state_dict()
        torch.save({f"features.{k}": v for k, v in feats.items()}, root / "alexnet.pth")
    out["alexnet"] = root / "alexnet.pth"
    if not (root / "places.pth.tar").exists():
        state = torchvision.models.resnet50(weights=None, num_classes=365).state_dict()
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "places.pth.tar")
    out["places"] = root / "places.pth.tar"
    if not (root / "imagenet.pth").exists():
        torch.save(torchvision.models.resnet50(weights=None).state_dict(), root / "imagenet.pth")
    out["imagenet"] = root / "imagenet.pth"
    if not (root / "clip-l14" / "config.json").exists():
        tokenizer = clip_tokenizer()
        config = CLIPConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                             num_attention_heads=12, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
            vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                               image_size=224, patch_size=14),
            projection_dim=768,
        )
        CLIPModel(config).save_pretrained(root / "clip-l14")
        CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(root / "clip-l14")
    out["clip"] = root / "clip-l14"
    return out


def build_images(root: Path, n: int, size: int) -> tuple[Path, Path]:
    import datasets

    rng = np.random.default_rng(0)
    files, labels = [], []
    for emotion in ("amusement", "fear"):
        folder = root / "gen" / emotion
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            # smooth random images (upsampled noise) compress like photos, unlike per-pixel noise
            small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i:05d}.png")
            files.append(str(folder / f"{i:05d}.png"))
            labels.append(emotion)
    features = datasets.Features({"image": datasets.Image(), "emotion": datasets.ClassLabel(names=["amusement", "fear"]),
                                  "caption": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": files, "emotion": labels, "caption": [f"a photo of {e}" for e in labels]},
                               features=features).save_to_disk(str(root / "real"))
    return root / "gen", root / "real"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="images per emotion (2 emotions)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/eval-bench"))
    args = parser.parse_args()

    from emocurate.core.config import load
    from emotrain.eval.config import EvalConfig
    from emotrain.eval.evaluate import evaluate

    t0 = time.perf_counter()
    weights = build_weights(args.out / "weights")
    gen, real = build_images(args.out / f"data-{args.n}-{args.size}", args.n, args.size)
    print(f"built weights + images in {time.perf_counter() - t0:.1f} s")
    common = [f"real.dataset={real}", f"fid.inception={weights['inception']}", f"fid.cache_dir={args.out / 'stats'}",
              f"lpips.alexnet={weights['alexnet']}", f"sem_c.places365={weights['places']}",
              f"sem_c.imagenet={weights['imagenet']}", f"clip.model={weights['clip']}", "emo_a.backend=clip-zeroshot",
              f"emo_a.model={weights['clip']}", f"lpips.pairs={args.n}", f"sem_d.pairs={args.n}"]
    if args.device:
        common.append(f"device={args.device}")
    images = 2 * args.n
    rates = {}
    # FID twice: the first pass also computes the real statistics (as many real images), the second hits the cache
    runs = [("fid (cold: real + generated)", "fid", 2 * images), ("fid (real stats cached)", "fid", images),
            ("lpips (pairs)", "lpips", 2 * args.n), ("emo_a (zero-shot CLIP-L)", "emo_a", images),
            ("sem_c (2 x ResNet-50)", "sem_c", images), ("sem_d (CLIP-L)", "sem_d", images)]
    # each run includes loading its backbone (seconds), so small --n understates the steady rate
    for label, metrics, items in runs:
        cfg = load(EvalConfig, None, common + [f"metrics=[{metrics}]", "report.paper_reference=false"])
        start = time.perf_counter()
        evaluate(cfg, {"bench": gen}, args.out / "report")
        seconds = time.perf_counter() - start
        rates[label] = {"items": items, "seconds": round(seconds, 2), "items_per_s": round(items / seconds, 2)}
        print(f"{label:32s} {items:5d} items  {seconds:7.1f} s  {items / seconds:7.2f} /s", flush=True)
    (args.out / "throughput.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rates": rates}, indent=2))


if __name__ == "__main__":
    main()
