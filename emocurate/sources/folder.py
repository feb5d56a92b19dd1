"""`folder:PATH`: every file under PATH (recursive, sorted); a first-level directory named after an emotion is its label.

It reads bytes only. Non-image files are yielded too, so they are recorded as dropped by ingest rather than vanishing.
Hidden files and directories (names starting with '.') are not inputs and are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from emocurate.core.emotions import POLARITY
from emocurate.sources.item import SourceItem


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of every non-hidden file under root, sorted (the source order)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        out.extend((rel_dir / f).as_posix() for f in filenames if not f.startswith("."))
    return sorted(out)


def label_of(rel_path: str) -> str | None:
    """The emotion named by the first directory level, if any (case-insensitive)."""
    parts = rel_path.split("/")
    if len(parts) < 2:
        return None
    name = parts[0].lower()
    return name if name in POLARITY else None


def iter_folder(path: str, spec: str) -> Iterator[SourceItem]:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"source {spec!r}: {root} is not a directory")
    for rel in list_files(root):
        try:
            data = (root / rel).read_bytes()
        except OSError as err:
            yield SourceItem(spec, rel, None, label_of(rel), error=f"read_error: {err.strerror or err}")
            continue
        yield SourceItem(spec, rel, data, label_of(rel))
