"""The dataset card: Hub YAML metadata, provenance and count tables from `cards/dataset_card.md.j2`, and its figures.

It reads the kept rows and the run's records; it writes README text and PNGs, never data, and never a secret.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow as pa

from emocurate.publish import figures

if TYPE_CHECKING:
    from emocurate.publish.config import Provenance, PublishConfig

def _card_template() -> Path:
    """`cards/dataset_card.md.j2`: in a checkout (editable install) beside the package; in a wheel, packaged as
    `emocurate/cards/` (pyproject maps the repo's `cards/` folder there)."""
    package = Path(__file__).resolve().parents[1]  # emocurate/
    checkout = package.parent / "cards" / "dataset_card.md.j2"
    packaged = package / "cards" / "dataset_card.md.j2"
    return packaged if packaged.exists() else checkout  # packaged first: site-packages/cards may be another project's


CARD_TEMPLATE = _card_template()
SECRET_KEY_RE = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
COLUMN_MEANINGS = {
    "image": "the original image file (bytes as ingested, not re-encoded)",
    "emotion": "the emotion label (ClassLabel; names in the features)",
    "polarity": "positive (amusement, awe, contentment, excitement) or negative (anger, disgust, fear, sadness)",
    "caption": "one emotion-focused sentence from the captioner",
    "emotion_confidence": "the classifier's probability of `emotion`",
    "clip_score": "cosine similarity of the CLIP image and caption embeddings",
    "source": "the source the image came from",
    "source_id": "the image's id within its source (path, row, URL)",
    "sha256": "sha256 of the image file bytes (the record id in the run's records.parquet)",
    "width": "image width in pixels",
    "height": "image height in pixels",
}


@dataclass(frozen=True)
class CardFacts:
    """What the card states about the written data."""

    num_rows: int
    nbytes: int
    """Arrow bytes of the table (the `num_bytes` of the train split)."""
    num_shards: int
    features: Any
    """The `datasets.Features` of the parquet files."""


class CardError(ValueError):
    """The card cannot be rendered safely; the message says what to change."""


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for `n` rows."""
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1B")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; `|` and newlines inside cells are escaped so a caption or prompt cannot break it."""
    def cell(v: Any) -> str:
        text = "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


def clip_summary(records: pa.Table, emotions: Sequence[str], clip_stage: str) -> dict[str, dict[str, list[float]]]:
    """Per emotion, CLIP scores of kept records and of those the CLIP filter dropped."""
    missing = [c for c in ("status", "dropped_by", "emotion", "clip_score") if c not in records.column_names]
    if missing:
        raise CardError(f"records table lacks column(s) {missing}; it has {records.column_names}")
    out = {e: {"kept": [], "dropped": []} for e in emotions}
    cols = [records[c].to_pylist() for c in ("status", "dropped_by", "emotion", "clip_score")]
    for status, dropped_by, emotion, score in zip(*cols):
        if emotion in out and score is not None:
            if status == "kept":
                out[emotion]["kept"].append(float(score))
            elif dropped_by == clip_stage:
                out[emotion]["dropped"].append(float(score))
    return out


def clip_cuts(scores: dict[str, dict[str, list[float]]]) -> dict[str, float | None]:
    """The cut per emotion: the lowest CLIP score kept (None when nothing was kept)."""
    return {e: min(s["kept"]) if s["kept"] else None for e, s in scores.items()}


def draw_figures(kept: pa.Table, emotions: Sequence[str], scores: dict[str, dict[str, list[float]]],
                 samples_per_emotion: int, seed: int, root: Path) -> dict[str, Any]:
    """Draw every card figure under `root/figures/` from the kept rows; return their paths relative to `root`."""
    names, captions, shas = (kept[c].to_pylist() for c in ("emotion", "caption", "sha256"))
    fig_dir = root / "figures"
    paths: dict[str, Any] = {
        "distribution": figures.emotion_distribution(Counter(names), emotions, fig_dir / "emotion_distribution.png"),
        "clip_scores": figures.clip_histograms(scores, clip_cuts(scores), fig_dir / "clip_scores.png"),
    }
    by_emotion = {e: sorted((i for i, n in enumerate(names) if n == e), key=shas.__getitem__) for e in emotions}
    rng = random.Random(seed)  # the same rows are shown for the same kept set, whatever its order
    samples = {}
    for e, rows in by_emotion.items():
        if rows and samples_per_emotion:
            pick = rng.sample(rows, min(len(rows), samples_per_emotion))
            samples[e] = figures.sample_grid(e, [kept["image_bytes"][i].as_py() for i in pick],
                                             [captions[i] for i in pick], fig_dir / f"samples_{e}.png")
    paths["top_words"] = figures.top_words({e: [captions[i] for i in rows] for e, rows in by_emotion.items()},
                                           fig_dir / "top_words.png")
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return {**{k: rel(p) for k, p in paths.items()}, "samples": {e: rel(p) for e, p in samples.items()}}


def card_data(facts: CardFacts, cfg: "PublishConfig"):
    """Hub YAML metadata: licence, tasks, size category, the `data/train-*` config and the features."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        language=cfg.language, license=cfg.license, pretty_name=cfg.pretty_name,
        size_categories=[size_category(facts.num_rows)], source_datasets=cfg.source_datasets or None,
        task_categories=cfg.task_categories, tags=cfg.tags,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        **{k: v for k, v in (("license_name", cfg.license_name), ("license_link", cfg.license_link)) if v},
    )
    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=facts.nbytes, num_examples=facts.num_rows))
    DatasetInfosDict({"default": DatasetInfo(features=facts.features, splits=splits)}).to_dataset_card_data(data)
    return data


def render_card(facts: CardFacts, records: pa.Table, emotions: Sequence[str], cfg: "PublishConfig",
                provenance: "Provenance", stage_counts: dict[str, dict[str, int]],
                scores: dict[str, dict[str, list[float]]], figure_paths: dict[str, Any]) -> str:
    """The README.md text, rendered from the Jinja template through huggingface_hub's DatasetCard."""
    from huggingface_hub import DatasetCard

    cuts = clip_cuts(scores)
    stages = list(stage_counts)
    keys = list(emotions) + sorted({k for c in stage_counts.values() for k in c if k not in emotions}, key=str)
    stage_rows = [[k if k is not None else "(no label)"] + [stage_counts[s].get(k, 0) for s in stages] for k in keys]
    stage_rows.append(["**total**"] + [sum(stage_counts[s].values()) for s in stages])
    statuses = zip(records["status"].to_pylist(), records["dropped_by"].to_pylist())
    dropped = Counter(d if d is not None else "(unknown)" for s, d in statuses if s != "kept")
    columns = [[f"`{name}`", _feature_type(feat), COLUMN_MEANINGS.get(name, "source metadata")]
               for name, feat in facts.features.items()]
    models = [[stage, m.get("backend"), f"`{m['model']}`" if m.get("model") else None,
               m.get("revision") or "not pinned"] for stage, m in provenance.models.items()]
    settings = [[k, v] for k, v in provenance.thresholds.items()]
    settings += [["clip_filter.drop_fraction", provenance.drop_fraction], ["seed", provenance.seed]]
    card = DatasetCard.from_template(
        card_data(facts, cfg), template_path=str(CARD_TEMPLATE),
        pretty_name=cfg.pretty_name, num_rows=facts.num_rows, num_shards=facts.num_shards, emotions=list(emotions),
        drop_percent=f"{100 * provenance.drop_fraction:g}", notes=provenance.notes, repo_id=cfg.repo_id,
        min_confidence=provenance.thresholds.get("classify.min_confidence"),
        classifier_emotions=(provenance.models.get("classify") or {}).get("emotions"),
        columns_table=md_table(["column", "type", "meaning"], columns),
        stage_table=md_table(["emotion", *stages], stage_rows),
        records_total=records.num_rows,
        dropped_table=md_table(["dropped by", "records"], sorted(dropped.items(), key=lambda kv: -kv[1])),
        status_table=md_table(["status", "URLs"], sorted(provenance.status_counts.items(), key=lambda kv: -kv[1]))
        if provenance.status_counts else None,
        clip_table=md_table(["emotion", "kept", "dropped by CLIP filter", "cut (lowest kept score)"],
                            [[e, len(s["kept"]), len(s["dropped"]), cuts[e]] for e, s in scores.items()]),
        figures=figure_paths, models_table=md_table(["stage", "backend", "model", "revision"], models),
        prompt=provenance.prompt, prompt_fence=_fence(provenance.prompt), settings_table=md_table(["setting", "value"], settings),
        recipe_yaml=_recipe_yaml(provenance.recipe), license=cfg.license, license_note=cfg.license_note,
        source_datasets=cfg.source_datasets,
    )
    return str(card).rstrip() + "\n"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _feature_type(feature) -> str:
    kind = type(feature).__name__
    if kind == "ClassLabel":
        return f"ClassLabel({', '.join(feature.names)})"
    return kind if kind != "Value" else feature.dtype


def redact(obj: Any) -> Any:
    """A plain-YAML copy of a recipe with values under secret-looking keys replaced (names of env vars are kept)."""
    if isinstance(obj, dict):
        return {str(k): "<redacted>" if SECRET_KEY_RE.search(str(k)) and not str(k).endswith("_env") and v
                else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj if obj is None or isinstance(obj, (str, int, float, bool)) else str(obj)


def _recipe_yaml(recipe: dict) -> str | None:
    import yaml

    return yaml.safe_dump(redact(recipe), sort_keys=False, allow_unicode=True).strip() if recipe else None


def check_no_secrets(text: str) -> None:
    """Refuse text that contains a known secret, naming where it came from but never its value."""
    from emocurate.publish.secrets import known_secrets

    for name, value in known_secrets().items():
        if value in text:
            raise CardError(f"the dataset card would contain the value of {name}: remove it from the recipe or notes")
