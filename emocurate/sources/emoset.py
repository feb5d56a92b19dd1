"""`emoset:PATH[:split]`: the official EmoSet-118K layout (`image/`, `annotation/`, `train.json`/`val.json`/`test.json`).

Each split file lists `[emotion, id, image path, annotation path]`; the emotion is the known label and the per-image
annotation (brightness, colorfulness, scene, object, facial_expression, human_action) is kept as metadata.
Without a split every split file present is read, in the order train, val, test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

from emocurate.core.emotions import POLARITY
from emocurate.sources.item import SourceItem

SPLITS = ("train", "val", "test")
ATTRIBUTES = ("brightness", "colorfulness", "scene", "object", "facial_expression", "human_action")


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def read_annotation(path: Path) -> tuple[dict[str, Optional[str]], Optional[str]]:
    """The attribute annotation as text metadata, and an error note if it is missing or unreadable (not fatal)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {}, f"annotation unreadable: {err}"
    return {k: _text(data.get(k)) for k in ATTRIBUTES}, None


def iter_emoset(path: str, split: Optional[str], spec: str) -> Iterator[SourceItem]:
    root = Path(path).expanduser()
    if split is not None and split not in SPLITS:
        raise ValueError(f"source {spec!r}: EmoSet split must be one of {', '.join(SPLITS)}; got {split!r}")
    files = [root / f"{s}.json" for s in ([split] if split else SPLITS)]
    present = [f for f in files if f.is_file()]
    if not present:
        raise FileNotFoundError(
            f"source {spec!r}: no {'/'.join(f.name for f in files)} under {root}; expected the official EmoSet-118K layout "
            "(image/, annotation/, train.json, val.json, test.json)"
        )
    for split_file in present:
        entries = json.loads(split_file.read_text())
        for entry in entries:
            emotion, item_id, image_rel, annotation_rel = entry[:4]
            label = emotion.lower() if isinstance(emotion, str) and emotion.lower() in POLARITY else None
            metadata, note = read_annotation(root / annotation_rel)
            metadata = {"split": split_file.stem, "emoset_id": str(item_id), **metadata}
            if note:
                metadata["annotation_error"] = note
            try:
                data = (root / image_rel).read_bytes()
            except OSError as err:
                yield SourceItem(spec, str(image_rel), None, label, metadata, error=f"read_error: {err.strerror or err}")
                continue
            yield SourceItem(spec, str(image_rel), data, label, metadata)
