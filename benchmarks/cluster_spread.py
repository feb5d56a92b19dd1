"""e_v spread of emotion-cluster draws against the spread over the training images' own token sets (issue 10, point 1).

Trains a tiny run (4 steps, tiny SD + tiny CLIP, 24 images in 4 emotions), then builds clusters from the same token
sets in several forms and prints, per emotion, spread(e_v over 64 draws) / spread(e_v over the real token sets), where
spread = mean pairwise distance and e_v = Encoder(Mapper(one-hot), v). "diagonal" (components 0) is the per-token
diagonal Gaussian the PCA clusters replaced; a ratio near 1 means draws vary e_v as real images do.

    python benchmarks/cluster_spread.py      # 1-2 min on CPU
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.emotrain.conftest builds the tiny dataset


def real_token_sets(ds: str, recipe) -> tuple[list[str], dict[str, torch.Tensor], list[str]]:
    """(emotions, {emotion: token sets (n, T, Dv)}, label per row) of the training images, as train.py embeds them."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from emocurate.core.tiny import resolve
    from emotrain.data import ClipImages, TrainingSet, load_training_dataset, validate
    from emotrain.model.conditioning import image_tokens

    clip_id = resolve(recipe.model.clip)
    vision, processor = CLIPModel.from_pretrained(clip_id).vision_model.eval(), CLIPImageProcessor.from_pretrained(clip_id)
    validated = validate(load_training_dataset(ds, "train"), recipe.data)
    tokenizer = CLIPTokenizer.from_pretrained(resolve(recipe.model.pretrained), subfolder="tokenizer")
    size = int(getattr(processor.crop_size, "height", None) or processor.crop_size["height"])
    images = ClipImages(TrainingSet(validated, recipe.data, tokenizer, size, processor.image_mean, processor.image_std))
    emotions = validated.emotions
    sets: dict[str, list[torch.Tensor]] = {e: [] for e in emotions}
    labels = []
    with torch.no_grad():
        for i in range(len(images)):
            pixels, k = images[i]
            sets[emotions[k]].append(image_tokens(vision, pixels[None])[0])
            labels.append(emotions[k])
    return emotions, {e: torch.stack(v) for e, v in sets.items()}, labels


def main() -> None:
    from emotrain.generate import load_run
    from emotrain.model.clusters import ClusterAccumulator, pick_sample
    from emotrain.train import train
    from tests.emotrain.conftest import _tiny_recipe, make_rows, save_dataset

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="cluster_spread_"))
    ds = save_dataset(make_rows(counts=[8, 6, 6, 4]), out / "ds")
    recipe = _tiny_recipe("optim.max_steps=4", "optim.batch_size=2")
    sampler = load_run(train(recipe, ds, out / "run"), device="cpu")
    emotions, sets, labels = real_token_sets(ds, recipe)

    def e_v(emotion: str, tokens: torch.Tensor) -> torch.Tensor:  # (n, T, Dv) -> (n, D)
        onehot = torch.nn.functional.one_hot(torch.full((len(tokens),), emotions.index(emotion)), len(emotions)).float()
        with torch.no_grad():
            return sampler.encoder(sampler.mapper(onehot), tokens).float()

    def spread(x: torch.Tensor) -> float:
        return float(torch.cdist(x, x).sum() / (len(x) * (len(x) - 1)))

    real = {e: spread(e_v(e, sets[e])) for e in emotions}
    rows = [i for e in emotions for i, label in enumerate(labels) if label == e]  # the order of torch.cat below
    tokens = torch.cat([sets[e] for e in emotions])
    for name, components, residual in (("diagonal (old)", 0, True), ("pca 2 + residual", 2, True),
                                       ("pca 16, no residual", 16, False), ("pca 16 + residual (default)", 16, True)):
        acc = ClusterAccumulator(emotions, pick_sample(labels, emotions, 128, 0), components)
        acc.add(tokens, [labels[i] for i in rows], rows)
        clusters = acc.finish()
        if not residual:
            clusters.residual_std = {e: torch.zeros_like(v) for e, v in clusters.residual_std.items()}
        gen = torch.Generator().manual_seed(0)
        ratios = {e: spread(e_v(e, clusters.sample(e, 64, generator=gen))) / real[e] for e in emotions}
        per = ", ".join(f"{e} {r:.3f}" for e, r in ratios.items())
        print(f"{name:28s} e_v spread ratio (draws / real): mean {sum(ratios.values()) / len(ratios):.3f}  ({per})")


if __name__ == "__main__":
    main()
