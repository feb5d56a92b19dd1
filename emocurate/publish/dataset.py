"""Lay the kept rows out as a Hub dataset folder (parquet shards with HF features, a card, figures) and push it.

It decides nothing about which rows to keep: the pipeline hands over the kept rows, the records table and the counts.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from emocurate.publish import card
from emocurate.publish.config import Provenance, PublishConfig, REPO_ID_RE
from emocurate.core.emotions import POLARITIES, check_emotions, polarity_of

REQUIRED_COLUMNS = ("image_bytes", "sha256", "emotion", "caption", "emotion_confidence", "clip_score", "source",
                    "source_id", "width", "height")
NOT_NULL = ("image_bytes", "sha256", "emotion", "caption")
RESERVED = ("image", "polarity")
PARQUET_ROW_GROUP = 100  # what `datasets` uses for image datasets: the Hub viewer reads a row group at a time


class PublishError(ValueError):
    """The dataset cannot be written or pushed as asked; the message says what to do."""


def write_dataset(kept: pa.Table, records: pa.Table, out_dir: Path, emotions: Sequence[str], cfg: PublishConfig,
                  provenance: Provenance, stage_counts: dict[str, dict[str, int]]) -> Path:
    """Write `out_dir` (data/train-*.parquet, README.md, figures/*.png) atomically: built in a hidden tmp folder, then
    renamed, so a folder named `out_dir` is always complete. Returns `out_dir`."""
    if not cfg.republish_images:
        raise PublishError(
            "this recipe sets publish.republish_images=false: the source's image licence does not allow "
            "republishing its images (EmoSet's is unstated), so no dataset with images is written. Share the run's "
            "records.parquet (ids, captions, scores) with people who hold the images, or set "
            "publish.republish_images=true only if you have the right to redistribute them.")
    emotions = check_emotions(emotions)
    check_kept(kept, emotions)
    features = features_for(emotions, kept)
    out_dir = Path(out_dir)
    written_before = (out_dir / "README.md").is_file()  # ours, even if a killed or concurrent write left it half done
    if out_dir.exists() and any(out_dir.iterdir()) and not written_before:
        raise PublishError(f"{out_dir} exists and is not a dataset folder written by emocurate: refusing to replace it "
                           "(publish into an empty or new folder, e.g. RUN/dataset)")
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    (tmp / "data").mkdir(parents=True)
    try:
        num_shards, nbytes = write_shards(kept, emotions, features, tmp / "data", cfg)
        scores = card.clip_summary(records, emotions, cfg.clip_stage)
        figure_paths = card.draw_figures(kept, emotions, scores, cfg.samples_per_emotion, provenance.seed, tmp)
        text = card.render_card(card.CardFacts(kept.num_rows, nbytes, num_shards, features), records, emotions, cfg,
                                provenance, stage_counts, scores, figure_paths)
        card.check_no_secrets(text)
        (tmp / "README.md").write_text(text, encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_kept(kept: pa.Table, emotions: Sequence[str]) -> None:
    """Every kept row has the required columns and values, an emotion of this dataset, and a unique sha256."""
    import pyarrow.compute as pc

    missing = [c for c in REQUIRED_COLUMNS if c not in kept.column_names]
    if missing:
        raise PublishError(f"kept table lacks column(s) {missing}; it has {kept.column_names}")
    clash = [c for c in RESERVED if c in kept.column_names]
    if clash:
        raise PublishError(f"kept table has column(s) {clash} that the published schema reserves; rename them")
    if kept.num_rows == 0:
        raise PublishError("no rows were kept, so there is nothing to publish: `emocurate status RUN` shows where rows "
                           "were dropped (then e.g. lower classify.min_confidence)")
    for col in NOT_NULL:
        if kept[col].null_count:
            raise PublishError(f"kept table has {kept[col].null_count} null value(s) in {col!r}; "
                               "every kept row needs one")
    unknown = sorted(set(pc.unique(kept["emotion"]).to_pylist()) - set(emotions))
    if unknown:
        raise PublishError(f"kept rows have emotion(s) {unknown} outside this dataset's emotions {list(emotions)}")
    if len(pc.unique(kept["sha256"])) != kept.num_rows:
        raise PublishError("kept table has duplicate sha256 values; dedup must run before publishing")


def features_for(emotions: Sequence[str], kept: pa.Table):
    """The dataset's `datasets.Features`: fixed columns, the kept table's extra metadata columns, sha256 and size."""
    from datasets import ClassLabel, Features, Image, Value

    extra = pa.schema([pa.field(c, _plain_type(kept[c].type)) for c in kept.column_names if c not in REQUIRED_COLUMNS])
    return Features({
        "image": Image(), "emotion": ClassLabel(names=list(emotions)), "polarity": ClassLabel(names=list(POLARITIES)),
        "caption": Value("string"), "emotion_confidence": Value("float32"), "clip_score": Value("float32"),
        "source": Value("string"), "source_id": Value("string"),
        **(Features.from_arrow_schema(extra) if len(extra) else {}),
        "sha256": Value("string"), "width": Value("int32"), "height": Value("int32"),
    })


def _plain_type(t: pa.DataType) -> pa.DataType:
    """A metadata column's published type: all-null and large/view strings become string, large binary binary."""
    if pa.types.is_null(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    return pa.binary() if pa.types.is_large_binary(t) or pa.types.is_binary_view(t) else t


def to_published(rows: pa.Table, emotions: Sequence[str], features) -> pa.Table:
    """Kept rows in the published schema: the file bytes as an Image struct, emotion and polarity as ClassLabel ids."""
    paths, widths, heights = [], rows["width"].to_pylist(), rows["height"].to_pylist()
    for i, sha in enumerate(rows["sha256"].to_pylist()):
        fmt, size = _image_header(rows["image_bytes"][i].as_py(), sha)
        paths.append(f"{sha}.{fmt}")
        widths[i], heights[i] = widths[i] or size[0], heights[i] or size[1]  # fill sizes the source did not give
    names = rows["emotion"].to_pylist()
    columns = {
        "image": pa.StructArray.from_arrays([rows["image_bytes"].combine_chunks().cast(pa.binary()),
                                             pa.array(paths, pa.string())], ["bytes", "path"]),
        "emotion": pa.array([emotions.index(e) for e in names]),
        "polarity": pa.array([POLARITIES.index(polarity_of(e)) for e in names]),
        "width": pa.array(widths), "height": pa.array(heights),
    }
    schema = features.arrow_schema
    return pa.table({name: columns[name] if name in columns else rows[name] for name in schema.names}).cast(schema)


def _image_header(blob: bytes, sha: str) -> tuple[str, tuple[int, int]]:
    """File extension and (width, height) from an image's header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as img:
            fmt = (img.format or "bin").lower()
            return {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt), img.size
    except (UnidentifiedImageError, OSError) as err:
        raise PublishError(f"kept row {sha[:12]}: image_bytes is not an image ({err}); "
                           "kept rows must hold the bytes of decodable images") from err


def shard_bounds(sizes: Sequence[int], rows_per_shard: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) row ranges: a shard closes at rows_per_shard rows or before its image bytes pass max_bytes."""
    bounds, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= rows_per_shard or acc + size > max_bytes):
            bounds.append((start, i))
            start, acc = i, 0
        acc += size
    return bounds + [(start, len(sizes))]


def write_shards(kept: pa.Table, emotions: Sequence[str], features, data_dir: Path,
                 cfg: PublishConfig) -> tuple[int, int]:
    """Write rows sorted by sha256 as `train-0000i-of-0000N.parquet`, one shard in memory at a time.

    Returns (number of shards, arrow bytes of all rows)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    order = pc.sort_indices(kept["sha256"])  # a stable order whatever order the pipeline's shards finished in
    sizes = pc.binary_length(kept["image_bytes"]).take(order).to_pylist()
    bounds = shard_bounds(sizes, cfg.rows_per_shard, cfg.max_shard_mb * 2**20)
    nbytes = 0
    for k, (a, b) in enumerate(bounds):
        shard = to_published(kept.take(order[a:b]), emotions, features)
        path = data_dir / f"train-{k:05d}-of-{len(bounds):05d}.parquet"
        pq.write_table(shard, path, row_group_size=PARQUET_ROW_GROUP)
        nbytes += shard.nbytes
    return len(bounds), nbytes


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished tmp folder into place; an older dataset there goes only once the new one is complete."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_dataset_dir(dataset_dir: Path) -> None:
    """A folder written by write_dataset: README.md and data/train-*.parquet present (a tmp folder never qualifies)."""
    if not (dataset_dir / "README.md").is_file() or not list((dataset_dir / "data").glob("train-*.parquet")):
        raise PublishError(f"{dataset_dir} is not a complete dataset folder (README.md and data/train-*.parquet "
                           "expected): run `emocurate build` (or write_dataset) to the end first; a recipe with "
                           "publish.republish_images=false writes no dataset to push")


def push(dataset_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the dataset repo if absent and upload the folder; return the repo URL.

    The token is `token`, else HF_TOKEN, else the login stored by `hf auth login`; it is never printed or written.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    dataset_dir = Path(dataset_dir)
    check_dataset_dir(dataset_dir)
    if not REPO_ID_RE.match(repo_id):
        raise PublishError(f"--repo must look like 'user/name' or 'org/name'; got {repo_id!r}")
    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token found: run `hf auth login`, or set HF_TOKEN to a token with "
                           "write access")
    for path in dataset_dir.rglob("*"):
        if path.suffix in (".md", ".json", ".yaml", ".yml", ".txt") and token in path.read_text(errors="ignore"):
            raise PublishError(f"{path} contains your Hugging Face token: delete it from that file before pushing")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
        api.upload_folder(folder_path=dataset_dir, repo_id=repo_id, repo_type="dataset",
                          ignore_patterns=[".*", "**/.*"], commit_message=f"Upload {dataset_dir.name} with emocurate")
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = " (check that the token has write access to this namespace)" if status in (401, 403) else ""
        raise PublishError(f"pushing to {repo_id} failed with HTTP {status}{hint}: {err}") from err
    return str(url)
