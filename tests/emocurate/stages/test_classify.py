import json
import shutil

import numpy as np
import pytest
from PIL import Image

from emocurate.stages.classify import ClassifyConfig, load_classifier, load_labelled_dataset, top_emotion, train_probe
from emocurate.core.emotions import EMOTIONS
from emocurate.core.tiny import resolve

COLOURS = {  # one well-separated solid colour per emotion: a dataset a linear probe must learn
    "amusement": (250, 200, 0), "awe": (0, 60, 250), "contentment": (40, 200, 60), "excitement": (250, 40, 40),
    "anger": (120, 0, 0), "disgust": (110, 120, 0), "fear": (10, 10, 10), "sadness": (150, 150, 170),
}


def colour_images(emotion, n, rng, size=24):
    base = np.array(COLOURS[emotion], dtype=int)
    return [Image.fromarray(np.clip(base + rng.integers(-12, 13, size=(size, size, 3)), 0, 255).astype(np.uint8))
            for _ in range(n)]


@pytest.fixture(scope="module")
def zeroshot():
    return load_classifier(ClassifyConfig(model="tiny:clip", device="cpu", batch_size=4), EMOTIONS)


def test_zeroshot_probabilities(zeroshot):
    rng = np.random.default_rng(0)
    images = [im for e in ("awe", "fear", "anger") for im in colour_images(e, 3, rng)] + [Image.new("L", (50, 20), 128)]
    probs = zeroshot.predict(images)
    assert probs.shape == (10, 8) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert zeroshot.emotions == EMOTIONS and zeroshot.backend == "clip-zeroshot"
    assert zeroshot.model_id == "tiny:clip" and zeroshot.revision is None
    # batching does not change a row
    np.testing.assert_allclose(zeroshot.predict(images[4:5])[0], probs[4], atol=1e-5)
    assert zeroshot.predict([]).shape == (0, 8)
    names, conf = top_emotion(probs, zeroshot.emotions)
    assert conf.tolist() == pytest.approx(probs.max(axis=1).tolist()) and names[0] == EMOTIONS[int(probs[0].argmax())]


def test_zeroshot_subset_is_renormalised_in_the_requested_order(zeroshot):
    subset = ("sadness", "awe", "fear")
    small = load_classifier(ClassifyConfig(model="tiny:clip", device="cpu"), subset)
    images = colour_images("awe", 2, np.random.default_rng(1)) + colour_images("sadness", 2, np.random.default_rng(2))
    full, part = zeroshot.predict(images), small.predict(images)
    assert part.shape == (4, 3) and small.emotions == subset
    expected = full[:, [EMOTIONS.index(e) for e in subset]]
    np.testing.assert_allclose(part, expected / expected.sum(axis=1, keepdims=True), atol=1e-5)


def test_zeroshot_custom_prompts_change_the_result():
    images = colour_images("fear", 2, np.random.default_rng(3))
    a = load_classifier(ClassifyConfig(model="tiny:clip", device="cpu"), ["awe", "fear"]).predict(images)
    prompts = {"awe": ["a mountain"], "fear": ["a snake in the dark", "a storm"]}
    b = load_classifier(ClassifyConfig(model="tiny:clip", device="cpu", prompts=prompts), ["awe", "fear"]).predict(images)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match=r"no prompts for \['fear'\]"):
        load_classifier(ClassifyConfig(model="tiny:clip", prompts={"awe": ["a mountain"]}), ["awe", "fear"])


def test_revision_is_the_hub_commit_when_loaded_from_the_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-clip"
    shutil.copytree(resolve("tiny:clip"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clf = load_classifier(ClassifyConfig(model="someone/tiny-clip", device="cpu"), ["awe", "fear"])
    assert clf.revision == commit and clf.model_id == "someone/tiny-clip"


def synthetic_dataset(n_per_emotion, seed, label_kind="classlabel", emotions=EMOTIONS):
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for e in emotions:
        images += colour_images(e, n_per_emotion, rng)
        labels += [e] * n_per_emotion
    if label_kind == "classlabel":
        features = Features({"image": ImageFeature(), "emotion": ClassLabel(names=list(EMOTIONS))})
        return Dataset.from_dict({"image": images, "emotion": [EMOTIONS.index(x) for x in labels]}, features=features)
    features = Features({"image": ImageFeature(), "emotion": Value("string")})
    return Dataset.from_dict({"image": images, "emotion": [x.capitalize() for x in labels]}, features=features)


def test_probe_train_save_load_predict(tmp_path):
    calls = []
    metrics = train_probe(synthetic_dataset(10, seed=0), tmp_path / "probe", clip_model="tiny:clip", device="cpu",
                          epochs=60, val_fraction=0.25, seed=0, progress=lambda done, total: calls.append((done, total)))
    assert metrics["n_train"] + metrics["n_val"] == 80 and metrics["n_val"] == 20 and metrics["n_skipped"] == 0
    assert metrics["train_accuracy"] >= 0.95 and metrics["val_accuracy"] >= 0.9
    assert calls[-1] == (80, 80)
    config = json.loads((tmp_path / "probe" / "probe_config.json").read_text())
    assert config["clip_model"] == "tiny:clip" and config["embedding_dim"] == 32 and config["emotions"] == list(EMOTIONS)
    assert not list((tmp_path / "probe").glob("*.tmp"))

    clf = load_classifier(ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe"), device="cpu"),
                          EMOTIONS)
    rng = np.random.default_rng(42)  # fresh images, never seen in training
    images, truth = [], []
    for e in EMOTIONS:
        images += colour_images(e, 3, rng)
        truth += [e] * 3
    probs = clf.predict(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    predicted, _ = top_emotion(probs, clf.emotions)
    assert np.mean([p == t for p, t in zip(predicted, truth)]) >= 0.9
    assert clf.backend == "clip-probe" and clf.model_id == "tiny:clip"

    subset = ("fear", "awe")
    part = load_classifier(ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe"), device="cpu"),
                           subset).predict(images)
    expected = probs[:, [EMOTIONS.index(e) for e in subset]]
    np.testing.assert_allclose(part, expected / expected.sum(axis=1, keepdims=True), atol=1e-5)


def test_probe_string_labels_subset_and_save_to_disk_folder(tmp_path):
    synthetic_dataset(4, seed=1, label_kind="string").save_to_disk(str(tmp_path / "ds"))
    dataset = load_labelled_dataset(str(tmp_path / "ds"), "train")
    metrics = train_probe(dataset, tmp_path / "probe", clip_model="tiny:clip", device="cpu", emotions=("awe", "fear", "sadness"),
                          epochs=5, val_fraction=0.0)
    assert metrics["n_train"] == 12 and metrics["n_skipped"] == 20 and metrics["val_accuracy"] is None
    assert metrics["counts"] == {"awe": 4, "fear": 4, "sadness": 4}
    # by default a classifier scores every class it was trained on, whatever the dataset keeps
    cfg = ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe"), device="cpu")
    assert load_classifier(cfg).emotions == ("awe", "fear", "sadness")
    cfg.emotions = ["fear", "awe"]  # classify.emotions narrows it (renormalised over the subset)
    assert load_classifier(cfg).emotions == ("fear", "awe")
    with pytest.raises(ValueError, match=r"trained on \['awe', 'fear', 'sadness'\]; it cannot score \['anger'\]"):
        load_classifier(ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "probe")), ["anger", "awe"])


def test_load_labelled_dataset_from_an_emotion_folder(tmp_path):
    for e in ("awe", "fear"):
        (tmp_path / "imgs" / e).mkdir(parents=True)
        for i, im in enumerate(colour_images(e, 2, np.random.default_rng(0))):
            im.save(tmp_path / "imgs" / e / f"{i}.png")
    dataset = load_labelled_dataset(str(tmp_path / "imgs"), "train")
    assert len(dataset) == 4 and dataset.features["label"].names == ["awe", "fear"]
    with pytest.raises(ValueError, match="no column 'emotion'"):
        train_probe(dataset, tmp_path / "p", clip_model="tiny:clip", device="cpu")


def test_probe_bad_labels_and_bad_probes(tmp_path):
    from datasets import Dataset

    images = colour_images("awe", 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"non-emotion labels \['cat'\]"):
        train_probe(Dataset.from_dict({"image": images, "emotion": ["awe", "cat"]}), tmp_path / "p", clip_model="tiny:clip")
    with pytest.raises(ValueError, match="without class names"):
        train_probe(Dataset.from_dict({"image": images, "emotion": [1, 2]}), tmp_path / "p", clip_model="tiny:clip")
    with pytest.raises(ValueError, match="has no probe_config.json"):
        load_classifier(ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "nothing")), EMOTIONS)

    from emocurate.stages.probe import Probe, save_probe

    k, d = 2, 16
    save_probe(Probe("some/clip-16d", None, ("awe", "fear"), d, np.zeros((k, d)), np.zeros(k), np.zeros(d), np.ones(d)),
               tmp_path / "p16")
    with pytest.raises(ValueError, match=r"expects 16-d embeddings from some/clip-16d.*gives 32-d"):
        load_classifier(ClassifyConfig(backend="clip-probe", model="tiny:clip", probe=str(tmp_path / "p16")), ["awe"])


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A tiny random ViT image classifier saved like a Hub model; its labels are given per test."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    def build(labels):
        folder = tmp_path_factory.mktemp("vit")
        config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
        ViTForImageClassification(config).save_pretrained(folder)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
        return str(folder)
    return build


def test_hf_backend_maps_labels_to_emotions(tiny_vit):
    labels = ["Fear", "AWE", "sadness", "anger", "amusement"]  # any order, any case
    path = tiny_vit(labels)
    images = colour_images("fear", 3, np.random.default_rng(0)) + [Image.new("RGBA", (20, 60), (1, 2, 3, 4))]
    full = load_classifier(ClassifyConfig(backend="hf", model=path, device="cpu", batch_size=3), ["awe", "fear", "sadness", "anger", "amusement"])
    probs = full.predict(images)
    assert probs.shape == (4, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model, proc = AutoModelForImageClassification.from_pretrained(path), AutoImageProcessor.from_pretrained(path)
    with torch.no_grad():
        logits = model(**proc(images=[im.convert("RGB") for im in images], return_tensors="pt")).logits.numpy()
    ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # columns in label order: fear, awe, sadness, anger, amusement
    np.testing.assert_allclose(probs, ref[:, [1, 0, 2, 3, 4]], atol=1e-5)

    part = load_classifier(ClassifyConfig(backend="hf", model=path, device="cpu"), ["fear", "awe"]).predict(images)
    np.testing.assert_allclose(part, ref[:, :2] / ref[:, :2].sum(axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match=r"has no label for \['disgust'\]"):
        load_classifier(ClassifyConfig(backend="hf", model=path), ["disgust"])


def test_hf_backend_rejects_non_emotion_labels(tiny_vit):
    path = tiny_vit(["cat", "dog", "fear"])
    with pytest.raises(ValueError, match=r"labels \['cat', 'dog', 'fear'\]; \['cat', 'dog'\] are not emotion names"):
        load_classifier(ClassifyConfig(backend="hf", model=path, device="cpu"), ["fear"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_confidence=1.5), r"classify.min_confidence must be in \[0, 1\]; got 1.5"),
    (dict(min_confidence=-0.1), r"min_confidence must be in \[0, 1\]"),
    (dict(backend="svm"), "classify.backend must be one of clip-zeroshot, clip-probe, hf"),
    (dict(backend="clip-probe"), "needs classify.probe=FOLDER"),
    (dict(backend="hf"), "classify.backend=hf needs classify.model=an image-classification model"),
    (dict(batch_size=0), "classify.batch_size must be an integer >= 1"),
    (dict(device="tpu"), "classify.device must be"),
    (dict(prompts={"joy": ["a happy dog"]}), "unknown emotion"),
    (dict(prompts={"awe": []}), "classify.prompts.awe must be a non-empty list"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassifyConfig(**kwargs)


def test_config_from_recipe_yaml(tmp_path):
    from emocurate.core.config import ConfigError, load

    recipe = tmp_path / "r.yaml"
    recipe.write_text("backend: clip-zeroshot\nmin_confidence: 0.8\nprompts:\n  awe: [a vast canyon]\n")
    cfg = load(ClassifyConfig, recipe)
    assert cfg.min_confidence == 0.8 and cfg.prompts == {"awe": ["a vast canyon"]}
    with pytest.raises(ConfigError, match="min_confidence must be in"):
        load(ClassifyConfig, recipe, ["min_confidence=2"])


def test_unknown_emotion_rejected():
    with pytest.raises(ValueError, match="unknown emotion"):
        load_classifier(ClassifyConfig(model="tiny:clip"), ["awe", "joy"])


def test_load_labelled_dataset_reads_emoset_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i, e in enumerate(["awe", "fear", "awe", "sadness"]):
        (tmp_path / "image" / e).mkdir(parents=True, exist_ok=True)
        colour_images(e, 1, rng)[0].save(tmp_path / "image" / e / f"{e}_{i}.jpg")
        entries.append([e, f"{e}_{i}", f"image/{e}/{e}_{i}.jpg", f"annotation/{e}/{e}_{i}.json"])
    (tmp_path / "train.json").write_text(json.dumps(entries[:3]))
    (tmp_path / "val.json").write_text(json.dumps(entries[3:] + [["fear", "gone", "image/fear/gone.jpg", "x.json"]]))
    train = load_labelled_dataset(str(tmp_path), "train")
    assert train["emotion"] == ["awe", "fear", "awe"] and train[0]["image"].size == (24, 24)
    with pytest.raises(ValueError, match=r"1 image\(s\) listed in val.json are missing"):
        load_labelled_dataset(str(tmp_path), "val")


def test_probe_skips_rows_without_an_image(tmp_path):
    from datasets import Dataset, Features, Image as ImageFeature, Value

    rng = np.random.default_rng(0)
    images = colour_images("awe", 3, rng) + [None] + colour_images("fear", 3, rng)
    labels = ["awe"] * 3 + ["fear"] * 4
    dataset = Dataset.from_dict({"image": images, "emotion": labels},
                                features=Features({"image": ImageFeature(), "emotion": Value("string")}))
    metrics = train_probe(dataset, tmp_path / "p", clip_model="tiny:clip", device="cpu", emotions=("awe", "fear"),
                          epochs=3, val_fraction=0.0, embed_batch_size=2)
    assert metrics["n_without_image"] == 1 and metrics["n_train"] == 6 and metrics["counts"] == {"awe": 3, "fear": 3}


def test_default_is_every_class_of_the_model_not_the_recipe_subset(tmp_path):
    """EmoArt keeps six emotions, but its classifier scores all of its own classes (the paper's 8-way EmoSet
    classifier): a new run folder records no subset, and the classifier it loads has all eight columns. A folder made
    before this change (its run.json lists the recipe's emotions) resumes with the columns its shards already hold."""
    import json

    from emocurate.recipe import CurateRecipe
    from emocurate.run.folder import prepare_run
    from emocurate.store.manifest import classifier_emotions

    six = ["amusement", "awe", "contentment", "anger", "fear", "sadness"]
    recipe = CurateRecipe(sources=["demo"], emotions=six, classify=ClassifyConfig(model="tiny:clip", device="cpu"))
    prepare_run(tmp_path / "run", recipe)
    assert classifier_emotions(tmp_path / "run") is None
    assert load_classifier(recipe.classify, classifier_emotions(tmp_path / "run")).emotions == tuple(EMOTIONS)
    prompts = {"awe": ["a mountain"], "fear": ["a dark alley"]}  # zero-shot: its classes are its prompts' emotions
    assert load_classifier(ClassifyConfig(model="tiny:clip", device="cpu", prompts=prompts)).emotions == ("awe", "fear")

    old = tmp_path / "old"
    prepare_run(old, recipe)
    manifest = json.loads((old / "run.json").read_text())
    manifest["classifier_emotions"] = six
    (old / "run.json").write_text(json.dumps(manifest))
    prepare_run(old, recipe)  # the same recipe still resumes it
    assert load_classifier(recipe.classify, classifier_emotions(old)).emotions == tuple(six)
    with pytest.raises(Exception, match="classifier scores for all of the model's classes"):
        recipe.classify.emotions = ["awe", "fear"]
        prepare_run(tmp_path / "run", recipe)
