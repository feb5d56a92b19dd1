"""One runner per metric for `emotrain.eval.evaluate`: load the backbone once, score every model's emotions, aggregate.

Each runner fills `models[name]["per_emotion"][emotion]` and `models[name]["overall"]` and returns what it used
(model ids, revisions, weight hashes, pair counts) for results.json. The metric math lives in `emotrain.eval.metrics`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from emocurate.core.emotions import EMOTIONS
from emotrain.eval.config import EvalConfig


@dataclass
class Run:
    cfg: EvalConfig
    sets: list
    real: object
    device: str
    progress: Callable | None
    """`progress(task, advance=0, total=None)`, or None."""
    clip: tuple | None = None
    """(loaded CLIP, image embeddings per (model, emotion)), shared by Sem-D and the CLIP score."""

    def bar(self, label: str, total: int):
        """Open a progress task of `total` items; return the callback that advances it."""
        if self.progress is None:
            return lambda n: None
        self.progress(label, 0, total)
        return lambda n: self.progress(label, n)

    def pair_seed(self, emotion: str) -> int:
        return self.cfg.seed + EMOTIONS.index(emotion)

    def bootstrap(self, models: dict, key: str, values: dict[str, dict[str, np.ndarray]], aggregate: str) -> None:
        """95% interval + replicates of `key` per model from its per-item values per emotion (same seed for every
        model: models generated with the same per-image seeds are compared image by image)."""
        from emotrain.eval.intervals import interval, replicates

        cfg = self.cfg.intervals
        for name, per_emotion in values.items():
            reps = replicates(per_emotion, cfg.resamples, self.cfg.seed, aggregate)
            _store_interval(models[name], key, reps, interval(reps, cfg.level))


def _store_interval(entry: dict, key: str, reps: np.ndarray, bounds: tuple[float, float]) -> None:
    entry.setdefault("intervals", {})[key] = list(bounds)
    entry.setdefault("bootstrap", {})[key] = [float(r) for r in reps]


def _mean_over_emotions(models: dict, key: str) -> None:
    for entry in models.values():
        values = [v[key] for v in entry["per_emotion"].values() if key in v]
        entry["overall"][key] = float(np.mean(values))


def _mean_over_images(models: dict, sets: list, key: str) -> None:
    """Overall value of a per-image metric: the per-emotion means weighted by image counts."""
    for s in sets:
        per = models[s.name]["per_emotion"]
        counts = {e: len(p) for e, p in s.images.items()}
        models[s.name]["overall"][key] = float(sum(per[e][key] * n for e, n in counts.items()) / sum(counts.values()))


def _commit(model) -> str | None:
    return getattr(getattr(model, "config", None), "_commit_hash", None)


def run_fid(run: Run, models: dict) -> dict:
    from emotrain.eval.metrics import fid

    cfg = run.cfg.fid
    extractor = fid.load_inception(cfg.inception, run.device)
    cache = fid.StatsCache(cfg.cache_dir or Path.home() / ".cache" / "emotrain" / "fid_stats")
    from importlib.metadata import version

    keys = {e: cache.key(dataset=run.real.fingerprint, emotion=e, image_column=run.cfg.real.image_column,
                         rows=hashlib.sha256(str(rows).encode()).hexdigest(), extractor=extractor.sha256, mode="clean",
                         cleanfid=version("clean-fid"))
            for e, rows in run.real.indices.items()}
    real = {e: cache.get(k) for e, k in keys.items()}
    cached = [e for e, s in real.items() if s is not None]
    todo = [e for e in real if real[e] is None]
    total = sum(len(run.real.indices[e]) for e in todo) + sum(len(p) for s in run.sets for p in s.images.values())
    advance = run.bar("FID", total)
    for e in todo:
        real[e] = fid.stats_of(fid.features(run.real.images(e), extractor, cfg.batch_size, advance))
        cache.put(keys[e], real[e])
    from emotrain.eval.intervals import fid_replicates, interval

    for s in run.sets:
        feats = {e: fid.features(paths, extractor, cfg.batch_size, advance) for e, paths in s.images.items()}
        gen = {e: fid.stats_of(f) for e, f in feats.items()}
        entry = models[s.name]
        for e, stats in gen.items():
            entry["per_emotion"][e]["fid"] = fid.frechet_distance(stats, real[e])
        entry["overall"]["fid"] = fid.frechet_distance(fid.pool(list(gen.values())), fid.pool([real[e] for e in gen]))
        entry["overall"]["fid_mean_per_emotion"] = float(np.mean([entry["per_emotion"][e]["fid"] for e in gen]))
        reps = fid_replicates(feats, real, run.cfg.intervals.fid_resamples, run.cfg.seed, run.device)
        _store_interval(entry, "fid", reps, interval(reps, run.cfg.intervals.level))
    return {"library": "clean-fid 'clean' preprocessing (PIL bicubic float resize to 299) and Inception interface; "
                       "Frechet distance by symmetric eigendecomposition (equal to clean-fid's frechet_distance)",
            "mode": "clean",
            "feature_extractor": extractor.name, "feature_extractor_sha256": extractor.sha256,
            "real_stats_cache": str(cache.folder), "real_stats_cached": cached,
            "pooled": "all generated images vs the real images of the same emotions; statistics pooled exactly"}


def run_lpips(run: Run, models: dict) -> dict:
    from emotrain.eval.metrics.lpips_diversity import ALEXNET_URL, lpips_distances, load_lpips
    from emotrain.eval.metrics.pairs import sample_pairs

    cfg = run.cfg.lpips
    model = load_lpips(cfg.alexnet, run.device)
    emogen = run.cfg.emogen
    plans = [(s, e, sample_pairs(len(p), cfg.pairs, run.pair_seed(e))) for s in run.sets for e, p in s.images.items()]
    # EmoGen's protocol: few pairs, [0, 1] inputs (its own pairs, drawn within the emotion; its cross-emotion leak is a bug)
    few = [(s, e, sample_pairs(len(p), emogen.pairs, run.pair_seed(e))) for s in run.sets for e, p in s.images.items()]
    advance = run.bar("LPIPS", sum(len(pairs) for _, _, pairs in plans + (few if emogen.enabled else [])))
    values: dict = {s.name: {} for s in run.sets}
    for s, e, pairs in plans:
        d = lpips_distances(s.images[e], pairs, model, cfg.image_size, cfg.batch_size, advance)
        models[s.name]["per_emotion"][e].update(lpips=float(d.mean()), lpips_std=float(d.std()), lpips_pairs=len(pairs))
        values[s.name][e] = d
    _mean_over_emotions(models, "lpips")
    run.bootstrap(models, "lpips", values, "mean_of_emotions")
    if emogen.enabled:
        values = {s.name: {} for s in run.sets}
        for s, e, pairs in few:
            d = lpips_distances(s.images[e], pairs, model, cfg.image_size, cfg.batch_size, advance, zero_one=True)
            models[s.name]["per_emotion"][e]["lpips_emogen"] = float(d.mean())
            values[s.name][e] = d
        _mean_over_emotions(models, "lpips_emogen")
        run.bootstrap(models, "lpips_emogen", values, "mean_of_emotions")
    from emotrain.eval.metrics.fid import file_sha256

    return {"net": "alex", "lpips_version": "0.1", "input_range": "[-1, 1]", "alexnet": cfg.alexnet,
            "lpips_emogen": (f"EmoGen's protocol: inputs in [0, 1] without normalize=True, {emogen.pairs} random pairs "
                             "per emotion") if emogen.enabled else None,
            "alexnet_sha256": file_sha256(Path(cfg.alexnet)), "alexnet_reference_url": ALEXNET_URL,
            "image_size": cfg.image_size or "native", "pairs_requested": cfg.pairs,
            "pair_seeds": {e: run.pair_seed(e) for e in EMOTIONS}}


def _clip_embeddings(run: Run):
    """CLIP image embeddings of every model's images, computed once per run for Sem-D and the CLIP score."""
    from emotrain.eval.metrics.clip_features import image_embeddings, load_clip

    if run.clip is None:
        clip = load_clip(run.cfg.clip.model, run.cfg.clip.revision, run.device)
        advance = run.bar("CLIP embeddings", sum(len(p) for s in run.sets for p in s.images.values()))
        emb = {(s.name, e): image_embeddings(p, clip, run.cfg.clip.batch_size, advance)
               for s in run.sets for e, p in s.images.items()}
        run.clip = (clip, emb)
    return run.clip


def _clip_info(clip) -> dict:
    return {"clip_model": clip.model_id, "clip_revision": clip.revision, "clip_commit": _commit(clip.model),
            "features": "projected image embedding (get_image_features), not L2-normalised"}


def run_sem_d(run: Run, models: dict) -> dict:
    from emotrain.eval.metrics.pairs import sample_pairs
    from emotrain.eval.metrics.semantic_diversity import pair_distances

    clip, emb = _clip_embeddings(run)
    emogen = run.cfg.emogen
    values: dict = {k: {s.name: {} for s in run.sets} for k in ("sem_d", "sem_d_cos", "sem_d_emogen")}
    for s in run.sets:
        for e, paths in s.images.items():
            pairs = sample_pairs(len(paths), run.cfg.sem_d.pairs, run.pair_seed(e))  # within emotion e only
            out = pair_distances(emb[(s.name, e)], pairs)
            models[s.name]["per_emotion"][e].update(sem_d=float(out["mse"].mean()),
                                                    sem_d_cos=float(out["one_minus_cos"].mean()), sem_d_pairs=len(pairs))
            values["sem_d"][s.name][e], values["sem_d_cos"][s.name][e] = out["mse"], out["one_minus_cos"]
            if emogen.enabled:
                few = pair_distances(emb[(s.name, e)], sample_pairs(len(paths), emogen.pairs, run.pair_seed(e)))["mse"]
                models[s.name]["per_emotion"][e]["sem_d_emogen"] = float(few.mean())
                values["sem_d_emogen"][s.name][e] = few
    for key in ("sem_d", "sem_d_cos") + (("sem_d_emogen",) if emogen.enabled else ()):
        _mean_over_emotions(models, key)
        run.bootstrap(models, key, values[key], "mean_of_emotions")
    return {**_clip_info(clip), "sem_d": "mean per-dimension squared difference over pairs (the paper's numbers)",
            "sem_d_cos": "mean 1 - cosine over the same pairs", "pairs_requested": run.cfg.sem_d.pairs,
            "pair_seeds": {e: run.pair_seed(e) for e in EMOTIONS}}


def run_clip_score(run: Run, models: dict) -> dict:
    from emotrain.eval.metrics.clip_features import text_embeddings
    from emotrain.eval.metrics.clip_score import clip_scores

    clip, emb = _clip_embeddings(run)
    sources, counts = {}, {}
    emotions = sorted({e for s in run.sets for e in s.images}, key=EMOTIONS.index)
    for e in emotions:
        texts, sources[e] = run.real.captions(e, run.cfg.clip_score.max_captions, run.pair_seed(e))
        counts[e] = len(texts)
        txt = text_embeddings(texts, clip)
        for s in run.sets:
            if e in s.images:
                models[s.name]["per_emotion"][e]["clip_score"] = float(clip_scores(emb[(s.name, e)], txt).mean())
    _mean_over_images(models, run.sets, "clip_score")
    return {**_clip_info(clip), "score": "mean over captions of 100 * max(cos, 0)", "captions": sources,
            "captions_per_emotion": counts}


def run_sem_c(run: Run, models: dict) -> dict:
    from emotrain.eval.metrics.fid import file_sha256
    from emotrain.eval.metrics.semantic_clarity import load_imagenet, load_places365, semantic_clarity, top_softmax

    cfg = run.cfg.sem_c
    places = load_places365(cfg.places365, cfg.places_arch, run.device, cfg.image_size)
    imagenet = load_imagenet(cfg.imagenet, cfg.imagenet_revision, run.device, cfg.image_size)
    advance = run.bar("Sem-C", 2 * sum(len(p) for s in run.sets for p in s.images.values()))
    values: dict = {s.name: {} for s in run.sets}
    for s in run.sets:
        for e, paths in s.images.items():
            p = top_softmax(paths, places, cfg.batch_size, advance)
            i = top_softmax(paths, imagenet, cfg.batch_size, advance)
            models[s.name]["per_emotion"][e].update(sem_c=semantic_clarity(p, i), sem_c_places=float(p.mean()),
                                                    sem_c_imagenet=float(i.mean()))
            values[s.name][e] = np.maximum(p, i)  # (N,): each image's Sem-C
    for key in ("sem_c", "sem_c_places", "sem_c_imagenet"):
        _mean_over_images(models, run.sets, key)
    run.bootstrap(models, "sem_c", values, "pooled")
    return {"places365": places.name, "places365_sha256": file_sha256(Path(cfg.places365)), "imagenet": imagenet.name,
            "imagenet_revision": cfg.imagenet_revision,
            "imagenet_commit": imagenet.commit,
            "preprocessing": f"resize {round(cfg.image_size * 256 / 224)} + center crop {cfg.image_size} (Places365); "
                             "the model's own image processor (transformers ImageNet model)"}


def classifier_emotions(cfg) -> tuple[str, ...]:
    """All emotions the configured classifier knows: Emo-A is argmax over all of them (8-way for EmoSet)."""
    if cfg.backend == "clip-probe":
        from emocurate.stages.probe import load_probe

        return tuple(load_probe(cfg.probe).emotions)
    if cfg.backend == "hf":
        from transformers import AutoConfig

        from emocurate.core.tiny import resolve

        labels = AutoConfig.from_pretrained(resolve(cfg.model), revision=cfg.revision).id2label.values()
        names = {str(n).strip().lower() for n in labels}
        return tuple(e for e in EMOTIONS if e in names)
    return EMOTIONS


def run_emo_a(run: Run, models: dict) -> dict:
    from emocurate.stages.classify import ClassifyConfig, load_classifier
    from emotrain.eval.metrics.emotion_accuracy import emotion_accuracy, emotion_probs

    cfg = run.cfg.emo_a
    classify_cfg = ClassifyConfig(backend=cfg.backend, model=cfg.model, revision=cfg.revision, probe=cfg.probe,
                                  batch_size=cfg.batch_size, device=run.device)
    emotions = classifier_emotions(cfg)
    classifier = load_classifier(classify_cfg, emotions)
    advance = run.bar("Emo-A", sum(len(p) for s in run.sets for p in s.images.values()))
    values: dict = {s.name: {} for s in run.sets}
    for s in run.sets:
        for e, paths in s.images.items():
            probs = emotion_probs(paths, classifier, cfg.batch_size, advance)
            out = emotion_accuracy(probs, classifier.emotions, e)
            values[s.name][e] = (probs.argmax(axis=1) == list(classifier.emotions).index(e)).astype(np.float64)
            models[s.name]["per_emotion"][e].update(emo_a=out["accuracy"], emo_a_polarity=out["polarity_accuracy"],
                                                    emo_a_target_prob=out["target_prob"])
    for key in ("emo_a", "emo_a_polarity", "emo_a_target_prob"):
        _mean_over_images(models, run.sets, key)
    run.bootstrap(models, "emo_a", values, "pooled")
    return {"backend": cfg.backend, "model": classifier.model_id, "revision": classifier.revision, "probe": cfg.probe,
            "classes": list(classifier.emotions),
            "emo_a": f"{len(classifier.emotions)}-way accuracy (argmax)",
            "emo_a_polarity": "polarity of the argmax emotion equals the target's",
            "emo_a_target_prob": "mean probability of the target emotion"}


RUNNERS: dict[str, Callable[[Run, dict], dict]] = {
    "fid": run_fid, "lpips": run_lpips, "emo_a": run_emo_a, "sem_c": run_sem_c, "sem_d": run_sem_d,
    "clip_score": run_clip_score,
}
