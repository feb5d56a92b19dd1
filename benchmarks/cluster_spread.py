"""e_v spread of emotion-cluster draws against the spread over the training images' own token sets (issue 10, point 1).

Trains a tiny run (4 steps, tiny SD + tiny CLIP, 24 images in 4 emotions), then builds clusters from the same token sets
in several forms and prints, per emotion, spread(e_v over 64 draws) / spread(e_v over the real token sets), where
spread = mean pairwise distance. "diagonal" is the per-token diagonal Gaussian the PCA clusters replaced.

    python benchmarks/cluster_spread.py      # about 1 min on CPU
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pathlib import Path
from tests.emotrain.conftest import make_rows, save_dataset, _tiny_recipe
from emotrain.train import train
from emotrain.generate import load_run
from emotrain.model.clusters import ClusterAccumulator, EmotionClusters, pick_sample
torch.set_num_threads(1)
import tempfile
out = Path(tempfile.mkdtemp(prefix="cluster_spread_"))
ds = save_dataset(make_rows(counts=[8, 6, 6, 4]), out / "ds")
recipe = _tiny_recipe("optim.max_steps=4", "optim.batch_size=2")
run = train(recipe, ds, out / "run")
from emotrain.data import load_training_dataset, validate, TrainingSet, ClipImages
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer
from emocurate.core.tiny import resolve
from emotrain.model.conditioning import image_tokens
sampler = load_run(run, device="cpu")
clip = CLIPModel.from_pretrained(resolve("tiny:clip")); proc = CLIPImageProcessor.from_pretrained(resolve("tiny:clip"))
validated = validate(load_training_dataset(ds, "train"), recipe.data)
tok = CLIPTokenizer.from_pretrained(resolve("tiny:sd"), subfolder="tokenizer")
crop = proc.crop_size; size = int(getattr(crop, "height", None) or crop["height"])
ts = TrainingSet(validated, recipe.data, tok, size, proc.image_mean, proc.image_std)
ci = ClipImages(ts)
emotions = validated.emotions
sets = {e: [] for e in emotions}
with torch.no_grad():
    for i in range(len(ci)):
        px, k = ci[i]
        sets[emotions[k]].append(image_tokens(clip.vision_model, px[None])[0])
sets = {e: torch.stack(v) for e, v in sets.items()}
def ev(e, v):
    k = emotions.index(e)
    oh = torch.nn.functional.one_hot(torch.tensor([k] * len(v)), len(emotions)).float()
    with torch.no_grad():
        return sampler.encoder(sampler.mapper(oh), v).float()
def spread(x):
    d = torch.cdist(x, x); n = len(x); return d.sum() / (n * (n - 1))
real = {e: spread(ev(e, sets[e])) for e in emotions}
def build(components, residual=True):
    acc = ClusterAccumulator(emotions, pick_sample([emotions[k] for k in ts.emotion_index], emotions, 128, 0), components)
    toks = torch.cat([sets[e] for e in emotions])  # rows grouped by emotion, in dataset order within each
    lab = [emotions[k] for k in ts.emotion_index]
    order = [i for e in emotions for i, l in enumerate(lab) if l == e]
    acc.add(toks, [lab[i] for i in order], order)
    c = acc.finish()
    if not residual:
        c.residual_std = {e: torch.zeros_like(v) for e, v in c.residual_std.items()}
    return c
g = torch.Generator().manual_seed(0)
for name, c in [("diagonal", build(0)), ("pca16+residual", build(16)), ("pca16", build(16, False)), ("pca2+residual", build(2))]:
    ratios = {e: float(spread(ev(e, c.sample(e, 64, generator=g))) / real[e]) for e in emotions}
    print(name, {e: round(r, 3) for e, r in ratios.items()}, "mean", round(sum(ratios.values()) / len(ratios), 3))
# file in the run
c = EmotionClusters.load(run / "emotion_clusters.safetensors")
print("run file", {e: round(float(spread(ev(e, c.sample(e, 64, generator=g))) / real[e]), 3) for e in emotions}, {e: tuple(c.components[e].shape) for e in emotions})
