"""Gallery thumbnails: one small JPEG per decodable ingested image, made once per ingest shard and resumable.

OUT/thumbs/NNNNN/SEQ.jpg, then OUT/thumbs/NNNNN.json (the seqs written) last: a shard with its list is never redone.
It reads the run's ingest shards and writes only under OUT; undecodable bytes simply get no thumbnail.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from emocurate.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from emocurate.core.progress import no_progress
from emocurate.store import shards

THUMB_PX = 160
"""Longest side of a thumbnail in pixels (tiles show them at up to 160 CSS pixels)."""
QUALITY = 75


def thumbnail(data: Optional[bytes], max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE) -> Optional[bytes]:
    """JPEG bytes of a THUMB_PX thumbnail, or None when the bytes do not decode (or exceed the run's size guards)."""
    from PIL import Image, ImageOps

    from emocurate.core.decode import to_rgb

    if not data:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels or max(w, h) > max_side:
                return None
            img.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: the smallest DCT scale still >= THUMB_PX (no-op for others)
            img = to_rgb(ImageOps.exif_transpose(img))
            img.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=QUALITY)
            return buf.getvalue()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError, SyntaxError, EOFError):
        return None


def _done_path(out: Path, shard: int) -> Path:
    return out / "thumbs" / f"{shard:05d}.json"


def thumb_shard(run_dir: Path, out: Path, shard: int, max_pixels: int, max_side: int, workers: int) -> Optional[list[int]]:
    """Thumbnails of one ingest shard; the seqs that got one (None when the ingest shard is not finished)."""
    done = _done_path(out, shard)
    if done.exists():
        return json.loads(done.read_text())["seqs"]
    table = shards.read_shard(run_dir, "ingest", shard, ["seq", "image_bytes"])
    if table is None:
        return None
    folder = out / "thumbs" / f"{shard:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    seqs = table.column("seq").to_pylist()
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding and resizing
        thumbs = list(pool.map(lambda b: thumbnail(b, max_pixels, max_side), table.column("image_bytes").to_pylist()))
    written = []
    for seq, jpeg in zip(seqs, thumbs):
        if jpeg is not None:
            (folder / f"{seq}.jpg").write_bytes(jpeg)
            written.append(seq)
    tmp = done.with_name(f".{done.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"seqs": written}))
    tmp.replace(done)  # written last: its existence means every thumbnail of the shard is there
    return written


def make_thumbnails(run_dir: Path, out: Path, n_shards: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                    max_side: int = DEFAULT_MAX_SIDE, workers: Optional[int] = None, progress=None) -> set[int]:
    """Thumbnails for every finished ingest shard (finished thumbnail shards are skipped); the seqs that have one.
    `workers` threads decode in parallel (default: one per CPU)."""
    progress = progress or no_progress
    workers = workers or os.cpu_count() or 1
    progress("thumbnails", 0, n_shards)
    have: set[int] = set()
    for shard in range(n_shards):
        have.update(thumb_shard(Path(run_dir), Path(out), shard, max_pixels, max_side, workers) or [])
        progress("thumbnails", 1)
    return have


def existing_thumbnails(out: Path) -> set[int]:
    """Seqs with a thumbnail from an earlier report (when this one skips making them)."""
    have: set[int] = set()
    for done in sorted((Path(out) / "thumbs").glob("[0-9]*.json")):
        have.update(json.loads(done.read_text())["seqs"])
    return have
