"""`hf:REPO_OR_PATH[:split]` and `wikiart`: rows of any `datasets`-loadable image dataset, streamed where possible.

Yields the image's stored bytes (never re-encoded), a known label when a column names emotions, and every other
scalar column as metadata (ClassLabel ids become their names, e.g. WikiArt's artist/genre/style). It decodes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from emocurate.core.emotions import POLARITY
from emocurate.sources.item import SourceItem

LABEL_COLUMNS = ("emotion", "label", "labels")


def open_dataset(target: str, split: Optional[str]):
    """A Dataset or IterableDataset for `target`: a `save_to_disk` folder, a local data folder/file, or a Hub id (streamed)."""
    import datasets

    path = Path(target).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split is None:
                split = "train" if "train" in ds else next(iter(ds))
            if split not in ds:
                raise ValueError(f"hf:{target}: no split {split!r}; splits: {', '.join(ds)}")
            ds = ds[split]
        return ds, split or "train"
    split = split or "train"
    if path.is_file():  # one data file: its format from the suffix
        builder = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}.get(path.suffix)
        if builder is None:
            raise ValueError(f"hf:{target}: a single file must be .parquet, .arrow, .csv or .json(l); got {path.suffix!r}")
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split, streaming=True), split
    source = str(path) if path.exists() else target
    return datasets.load_dataset(source, split=split, streaming=True), split


def image_column(features) -> str:
    from datasets import Image

    if features is not None:
        for name, feat in features.items():
            if isinstance(feat, Image):
                return name
    if features is None or "image" in features:
        return "image"
    raise ValueError(f"no image column found (columns: {', '.join(features)}); the dataset needs a datasets.Image column")


def label_column(features) -> Optional[str]:
    """A column whose values are emotion names (ClassLabel names or strings), preferring `emotion`, then `label`."""
    from datasets import ClassLabel, Value

    if features is None:
        return None
    for name in LABEL_COLUMNS:
        feat = features.get(name)
        if isinstance(feat, ClassLabel) and all(n.lower() in POLARITY for n in feat.names):
            return name
        if isinstance(feat, Value) and feat.dtype == "string":
            return name  # checked per row: values that are not emotion names give no label
    return None


def _scalar_columns(features, skip: set[str]) -> dict[str, Any]:
    from datasets import ClassLabel, Value

    if features is None:
        return {}
    return {n: f for n, f in features.items() if n not in skip and isinstance(f, (ClassLabel, Value)) and f.dtype != "binary"}


def _as_text(feat, value) -> Optional[str]:
    from datasets import ClassLabel

    if value is None:
        return None
    if isinstance(feat, ClassLabel):
        return feat.names[value] if isinstance(value, int) and 0 <= value < len(feat.names) else str(value)
    return str(value)


def _image_bytes(value) -> tuple[Optional[bytes], Optional[str]]:
    if value is None:
        return None, "missing_image: the row has no image"
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], None
        if value.get("path") and Path(value["path"]).is_file():
            return Path(value["path"]).read_bytes(), None
        if value.get("bytes") == b"":
            return b"", None
        return None, f"missing_image: no bytes and no readable path ({value.get('path')!r})"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None
    if hasattr(value, "save") and hasattr(value, "mode"):  # an already decoded PIL image (features unknown): re-encoded
        import io

        buf = io.BytesIO()
        value.save(buf, value.format or "PNG")
        return buf.getvalue(), None
    return None, f"missing_image: unsupported image value of type {type(value).__name__}"


def iter_hf(target: str, split: Optional[str], spec: str) -> Iterator[SourceItem]:
    from datasets import Image

    ds, split = open_dataset(target, split)
    features = ds.features
    img_col = image_column(features)
    if features is not None:  # keep the stored bytes: no decode, no re-encode
        ds = ds.cast_column(img_col, Image(decode=False))
    lab_col = label_column(features)
    meta_cols = _scalar_columns(features, {img_col} | ({lab_col} if lab_col else set()))
    for index, row in enumerate(ds):
        data, error = _image_bytes(row.get(img_col))
        label = None
        if lab_col is not None:
            text = _as_text(features[lab_col], row.get(lab_col))
            label = text.lower() if text and text.lower() in POLARITY else None
        metadata = {n: _as_text(f, row.get(n)) for n, f in meta_cols.items()}
        yield SourceItem(spec, f"{split}/{index}", data, label, metadata, error=error)
