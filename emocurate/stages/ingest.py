"""Ingest one shard: SourceItems -> a table with each item's id (sha256 of the file bytes), size, and drop reason.

Pure per-shard work: decode to verify and measure, keep the original bytes of decodable images. No dedup here
(that is a decision over all shards, see run/decide.py) and no models.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import pyarrow as pa

from emocurate.core.decode import decode_image, sha256_hex
from emocurate.sources.item import SourceItem

INGEST_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("shard", pa.int32()),
    ("id", pa.string()),
    ("source", pa.string()),
    ("source_id", pa.string()),
    ("label", pa.string()),
    ("metadata", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("format", pa.string()),
    ("original_mode", pa.string()),
    ("ingest_dropped_by", pa.string()),
    ("ingest_error", pa.string()),
    ("image_bytes", pa.binary()),
])
META_COLUMNS = [f.name for f in INGEST_SCHEMA if f.name != "image_bytes"]


def missing_id(source: str, source_id: str) -> str:
    """The id of an item that has no bytes: 'nodata-' + sha256 of '<source>\\n<source_id>' (cannot collide with a file hash)."""
    return "nodata-" + hashlib.sha256(f"{source}\n{source_id}".encode()).hexdigest()


def _check(item: SourceItem, max_pixels: int, max_side: int) -> dict:
    """The ingest fields of one item (decoding releases the GIL, so this runs well in threads)."""
    if item.data is None:
        return dict(id=missing_id(item.source, item.source_id), ingest_dropped_by=item.dropped_by or "ingest",
                    ingest_error=item.error or "no_data: the source gave no bytes")
    decoded = decode_image(item.data, max_pixels=max_pixels, max_side=max_side)
    out = dict(id=sha256_hex(item.data), format=decoded.format, original_mode=decoded.original_mode)
    if decoded.image is None:
        return dict(out, ingest_dropped_by="ingest", ingest_error=decoded.reason)
    return dict(out, width=decoded.image.width, height=decoded.image.height, image_bytes=item.data)


def ingest_shard(items: Sequence[SourceItem], shard: int, first_seq: int, max_pixels: int, max_side: int,
                 workers: int = 1) -> pa.Table:
    """One row per item, in order; `image_bytes` is set only for images that decode. `workers` threads decode."""
    if workers > 1 and len(items) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            checked = list(pool.map(lambda item: _check(item, max_pixels, max_side), items))
    else:
        checked = [_check(item, max_pixels, max_side) for item in items]
    rows = {name: [] for name in INGEST_SCHEMA.names}
    for offset, (item, fields) in enumerate(zip(items, checked)):
        row = dict(seq=first_seq + offset, shard=shard, source=item.source, source_id=item.source_id, label=item.label,
                   metadata=json.dumps(item.metadata, sort_keys=True, default=str))
        row.update(fields)
        for name in rows:
            rows[name].append(row.get(name))
    return pa.table(rows, schema=INGEST_SCHEMA)
