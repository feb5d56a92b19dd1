"""A run's kept records + their stored original bytes -> `publish.write_dataset` (RUN/dataset/), and `push_run`.

It gathers and hands over; the dataset layout and the card are the publish package's business.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from emocurate.store import shards

KEPT_COLUMNS = ("sha256", "emotion", "caption", "emotion_confidence", "clip_score", "source", "source_id", "width", "height")
EMOSET_NOTE = ("EmoSet-118K's image licence is unstated: never republish its images. Publish captions and ids only, "
               "or keep this dataset private to your own machines.")


def kept_table(run_dir: Path, records: pa.Table) -> pa.Table:
    """Kept rows in input order with `image_bytes` (the original file bytes) and metadata keys as string columns."""
    kept = records.filter(pc.equal(records.column("status"), "kept")).sort_by("seq")
    # with dedup off, byte-identical rows can all be kept; the published dataset holds each image once (first wins)
    first = {}
    for i, sha in enumerate(kept.column("id").to_pylist()):
        first.setdefault(sha, i)
    kept = kept.take(sorted(first.values()))
    blobs: dict[int, bytes] = {}
    for shard in sorted(set(kept.column("shard").to_pylist())):
        stored = shards.read_shard(run_dir, "ingest", shard, ["seq", "image_bytes"])
        blobs.update(zip(stored.column("seq").to_pylist(), stored.column("image_bytes").to_pylist()))
    joined = kept.append_column("image_bytes", pa.array([blobs[s] for s in kept.column("seq").to_pylist()], pa.binary()))
    metas = [json.loads(m) if m else {} for m in joined.column("metadata").to_pylist()]
    keys = sorted({k for m in metas for k in m})
    columns = {"image_bytes": joined.column("image_bytes"), "sha256": joined.column("id")}
    columns.update({c: joined.column(c) for c in KEPT_COLUMNS if c != "sha256"})
    for key in keys:
        name = key if key not in columns and key not in ("polarity", "image") else f"meta_{key}"
        columns[name] = pa.array([None if m.get(key) is None else str(m[key]) for m in metas], pa.string())
    return pa.table(columns)


def _thresholds(recipe) -> dict:
    """Decision settings for the card (the drop fraction and seed have their own Provenance fields)."""
    return {"classify.min_confidence": recipe.classify.min_confidence,
            "apply_min_confidence_to_labelled": recipe.apply_min_confidence_to_labelled,
            "dedup": recipe.dedup, "emotions": ", ".join(recipe.emotions)}


def uses_emoset(recipe) -> bool:
    return any(s.startswith("emoset:") for s in recipe.sources)


def publish_records(run_dir: Path, recipe, records: pa.Table) -> tuple[Optional[Path], Optional[str]]:
    """Write RUN/dataset/ from the kept records: (path, None), or (None, why not) when nothing can be published yet."""
    from emocurate.publish.dataset import Provenance, PublishError, write_dataset
    from emocurate.publish.secrets import redact_folder, redact_table, run_secrets
    from emocurate.run.status import stage_counts_of

    if not getattr(recipe.publish, "republish_images", True):
        return None, "publish.republish_images is false: no dataset with images is written (records.parquet has the rest)"
    if not pc.any(pc.equal(records.column("status"), "kept")).as_py():
        withdraw(run_dir)  # a dataset from earlier records must not stay behind to be pushed
        return None, "no kept records (an earlier dataset/ was removed)"
    models_path = run_dir / "models.json"
    models = json.loads(models_path.read_text()) if models_path.exists() else {}
    prompt = models.get("caption", {}).get("prompt", recipe.caption.prompt)
    notes = list(_notes(recipe))
    # a model or endpoint that echoed a key into a caption (or metadata) must not publish it: redact every text column
    secrets = run_secrets(recipe)
    kept, n_redacted = redact_table(kept_table(run_dir, records), secrets)
    records, _ = redact_table(records, secrets)
    if n_redacted:
        notes.append(f"{n_redacted} text value(s) held a secret this run used (an API key or token echoed by a model) "
                     "and were redacted to [REDACTED].")
    status_counts = None
    if (run_dir / "crawl").is_dir():  # a urls: source: fetch status counts, and whether robots were ignored
        from emocurate.crawl.state import runs, summary

        status_counts = summary(run_dir / "crawl")
        if any(r.get("ignore_robots") for r in runs(run_dir / "crawl")):
            notes.append("--ignore-robots was used: robots.txt and X-Robots-Tag opt-outs were NOT honoured for some URLs.")
    provenance = Provenance(
        models={stage: {k: info.get(k) for k in ("backend", "model", "revision", "emotions") if k in info or k != "emotions"}
                for stage, info in models.items()},  # the classifier's "emotions": the classes it scored
        prompt=prompt, thresholds=_thresholds(recipe), drop_fraction=recipe.clip_filter.drop_fraction, seed=recipe.seed,
        recipe=recipe_for_publishing(recipe), notes=notes, status_counts=status_counts,
    )
    try:
        path = write_dataset(kept, records, run_dir / "dataset", recipe.emotions, recipe.publish,
                             provenance, stage_counts_of(run_dir, recipe.emotions))
    except PublishError as err:  # the records stay valid, the dataset is simply not written
        (run_dir / PUBLISHED).unlink(missing_ok=True)  # whatever dataset/ holds, it is not from these records
        return None, str(err)
    redact_folder(path, secrets)  # belt and braces: whatever else reached a file
    shards.write_json_atomic(run_dir / PUBLISHED, {"records_sha256": records_sha256(run_dir)})
    return path, None


def recipe_for_publishing(recipe) -> dict:
    """The recipe as a dict with credentials removed from caption.base_url (http://user:key@host -> http://host)."""
    from emocurate.publish.secrets import strip_credentials

    data = asdict(recipe)
    data["caption"]["base_url"] = strip_credentials(data["caption"]["base_url"])
    return data


PUBLISHED = "published.json"
"""RUN/published.json: the sha256 of the records.parquet that dataset/ was written from (`push` checks it)."""


def records_sha256(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha256((Path(run_dir) / "records.parquet").read_bytes()).hexdigest()


def withdraw(run_dir: Path) -> None:
    """Remove RUN/dataset/ (when it holds only what write_dataset writes) and its fingerprint: a dataset the records no
    longer support is not left behind to be pushed."""
    import shutil

    dataset = Path(run_dir) / "dataset"
    (Path(run_dir) / PUBLISHED).unlink(missing_ok=True)
    if dataset.is_dir() and {p.name for p in dataset.iterdir()} <= {"README.md", "data", "figures"}:
        shutil.rmtree(dataset)


def check_current(run_dir: Path) -> None:
    """Raise PublishError unless RUN/dataset/ was written from the current RUN/records.parquet."""
    from emocurate.publish.dataset import PublishError

    path = Path(run_dir) / PUBLISHED
    written_from = json.loads(path.read_text()).get("records_sha256") if path.exists() else None
    if written_from is None or written_from != records_sha256(run_dir):
        raise PublishError(f"{Path(run_dir) / 'dataset'} was not written from the current {Path(run_dir) / 'records.parquet'} "
                           f"(a later refilter or a build with --no-publish changed the records): run "
                           f"`emocurate refilter {run_dir}` to write it again, then push")


def _notes(recipe):
    if any("tiny:" in getattr(cfg, "model", "") for cfg in (recipe.classify, recipe.caption, recipe.clip_filter)):
        yield "Built with tiny RANDOM models (a demo or a test): emotions, captions and CLIP scores are noise."
    if uses_emoset(recipe):
        yield EMOSET_NOTE
    yield ("Record id = sha256 of the original file bytes (as stored or fetched); an item without bytes gets "
           "'nodata-' + sha256 of '<source>\\n<source_id>'.")
    yield (f"Known labels (emotion folders, EmoSet) are trusted; classify.min_confidence applied to them: "
           f"{'yes' if recipe.apply_min_confidence_to_labelled else 'no'}.")


def push_run(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload RUN/dataset/ to the Hub; refuses a dataset that holds EmoSet images (their licence is unstated)."""
    run_dir = Path(run_dir)
    dataset = run_dir / "dataset"
    if not (dataset / "README.md").exists():
        raise FileNotFoundError(f"{dataset} has no dataset (README.md missing): run `emocurate build` first")
    from emocurate.recipe import load_recipe

    recipe = load_recipe(run_dir / "recipe.yaml")
    if uses_emoset(recipe):
        raise ValueError(f"refusing to push {dataset}: it holds EmoSet images. {EMOSET_NOTE}")
    check_current(run_dir)
    from emocurate.publish.dataset import PublishError, push
    from emocurate.publish.secrets import find_in_folder, run_secrets

    leaks = find_in_folder(dataset, run_secrets(recipe))
    if leaks:
        raise PublishError(f"refusing to push {dataset}: secret values found in {'; '.join(leaks)}. Publish again "
                           f"(`emocurate refilter {run_dir} --set ...` or rerun `emocurate build`), which redacts them")

    return push(dataset, repo_id, private=private)
