"""Sem-C: mean over images of max(top softmax of a Places365 ResNet, top softmax of an ImageNet ResNet-50).

Places365 weights come from a local CSAIL checkpoint (`resnet50_places365.pth.tar`: a `state_dict` with `module.`
prefixes, 365 classes). The ImageNet model is a transformers image classifier (Hub id or folder, e.g.
`microsoft/resnet-50`) or a torchvision ResNet-50 weights file. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emotrain.eval.metrics.images import Advance, ImageItem, batches

PLACES365_URL = "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors")


@dataclass
class Classifier:
    """A loaded image classifier: `preprocess(list[PIL]) -> (B, 3, H, W)` and `model(x) -> logits (B, C)`."""

    model: Callable
    preprocess: Callable
    device: str
    name: str
    commit: str | None = None
    """The Hub commit the weights came from, when loaded from the Hub."""


def torchvision_preprocess(size: int = 224) -> Callable:
    """The usual ImageNet/Places evaluation transform: resize the short side to size*256/224, center crop, normalise."""
    from torchvision import transforms

    tf = transforms.Compose([
        transforms.Resize(round(size * 256 / 224)),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    import torch

    return lambda images: torch.stack([tf(img) for img in images])


def load_places365(path: str | Path | None, arch: str, device: str, image_size: int = 224) -> Classifier:
    """A torchvision ResNet (`arch`) with 365 outputs from a CSAIL Places365 checkpoint file."""
    import torch
    import torchvision

    if not path:
        raise FileNotFoundError(f"Sem-C needs Places365 weights: download {PLACES365_URL} and set sem_c.places365=PATH")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sem_c.places365={path} does not exist; download {PLACES365_URL} there or fix the path")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = getattr(torchvision.models, arch)(weights=None, num_classes=365)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"sem_c.places365={path} does not fit a {arch} with 365 classes (set sem_c.places_arch?): {err}") from None
    return Classifier(model=model.eval().to(device), preprocess=torchvision_preprocess(image_size), device=device,
                      name=f"{arch}-places365 ({path.name})")


def load_imagenet(model_id: str, revision: str | None, device: str, image_size: int = 224) -> Classifier:
    """An ImageNet classifier: a torchvision ResNet-50 weights file, or a transformers model (Hub id, folder, `tiny:NAME`)."""
    import torch

    if model_id.lower().endswith(WEIGHT_SUFFIXES):
        import torchvision

        path = Path(model_id)
        if not path.is_file():
            raise FileNotFoundError(f"sem_c.imagenet={path} does not exist; give a torchvision resnet50 weights file or a Hub id")
        model = torchvision.models.resnet50(weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return Classifier(model=model.eval().to(device), preprocess=torchvision_preprocess(image_size), device=device,
                          name=f"torchvision resnet50 ({path.name})")
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from emocurate.core.tiny import resolve

    path = resolve(model_id)
    hf_model = AutoModelForImageClassification.from_pretrained(path, revision=revision).eval().to(device)
    processor = AutoImageProcessor.from_pretrained(path, revision=revision)
    return Classifier(model=lambda x: hf_model(pixel_values=x).logits,
                      preprocess=lambda images: processor(images=images, return_tensors="pt")["pixel_values"],
                      device=device, name=model_id, commit=getattr(hf_model.config, "_commit_hash", None))


def top_softmax(items: Sequence[ImageItem], classifier: Classifier, batch_size: int = 64,
                progress: Advance | None = None) -> np.ndarray:
    """Highest class probability of each image: (N,) float64."""
    import torch

    out = []
    for batch in batches(items, batch_size):
        x = classifier.preprocess(batch).to(classifier.device)  # (B, 3, H, W)
        with torch.no_grad():
            probs = torch.softmax(classifier.model(x).float(), dim=-1)  # (B, C)
        out.append(probs.max(dim=-1).values.double().cpu().numpy())
        if progress:
            progress(len(batch))
    return np.concatenate(out) if out else np.zeros(0)


def semantic_clarity(places_top: np.ndarray, imagenet_top: np.ndarray) -> float:
    """Mean over images of max(Places365 top probability, ImageNet top probability)."""
    if places_top.shape != imagenet_top.shape or not len(places_top):
        raise ValueError(f"Sem-C needs one score per image from each model; got {places_top.shape} and {imagenet_top.shape}")
    return float(np.maximum(places_top, imagenet_top).mean())
