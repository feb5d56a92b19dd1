"""The one thing every source yields: an input item with its file bytes, or the reason it has none.

Sources (folders, Hub datasets, EmoSet, URL lists) only produce these; they do not decode, classify or decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceItem:
    source: str
    """The source spec it came from, e.g. 'folder:/data/x', 'hf:huggan/wikiart:train', 'urls:list.csv'."""
    source_id: str
    """Stable id within the source: relative path, row index, URL."""
    data: bytes | None
    """The file bytes as stored or fetched; None when the item could not be obtained (see `error`)."""
    label: str | None = None
    """A known emotion label (folder name, EmoSet annotation), else None."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Carried to the dataset as source metadata (artist, genre, style, url, license, ...)."""
    error: str | None = None
    """Why `data` is None, kept as the drop reason, e.g. 'http_error: 404 Not Found'."""
    dropped_by: str | None = None
    """The stage that failed to obtain the item (e.g. 'fetch'); None means 'ingest'."""
