"""Turn raw file bytes into one RGB PIL image, or a reason why not; or only verify that they decode (verify_image,
cheaper: JPEGs are decoded at 1/8 scale). Checks content by decoding, never by file name.

Handles CMYK, 16-bit, palette, alpha (composited on white), EXIF orientation; refuses decompression bombs and huge
dimensions before decoding the pixels. It does not resize: stages cap sizes for their own models.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 64_000_000  # ~8000 x 8000; Pillow's own bomb limit is 89.5 MP
DEFAULT_MAX_SIDE = 20_000


@dataclass(frozen=True)
class Decoded:
    """An RGB image (or None) and, when None, why: `empty_file`, `not_an_image: ...`, `too_large: ...`, `corrupt: ...`."""

    image: Image.Image | None
    reason: str | None = None
    format: str | None = None
    original_mode: str | None = None


@dataclass(frozen=True)
class Verified:
    """Whether bytes decode as a complete image; `reason` as in Decoded; width/height are the full (undecoded) size."""

    ok: bool
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None


def sha256_hex(data: bytes) -> str:
    """The record id: sha256 of the file's bytes as stored or fetched (not of decoded pixels)."""
    return hashlib.sha256(data).hexdigest()


def _load(data: bytes, max_pixels: int, max_side: int, reduced: bool):
    """Open and load pixels behind the bomb and size guards: (image, None, format, w, h) or (None, reason, format, w, h).

    `reduced` decodes a JPEG at 1/8 scale (libjpeg's DCT scaling still entropy-decodes every scan, so a truncated or
    corrupt stream fails as in a full decode)."""
    if not data:
        return None, "empty_file", None, None, None
    fmt = w = h = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            w, h = img.size
            if w * h > max_pixels or max(w, h) > max_side:
                return None, f"too_large: {w}x{h} exceeds max_pixels={max_pixels} / max_side={max_side}", fmt, w, h
            if reduced and fmt == "JPEG":
                img.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # before load(): picks the 1/8 (or nearest) scale
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, f"too_large: decompression bomb ({err})", fmt, w, h
    except Image.UnidentifiedImageError:
        return None, "not_an_image: content is not a decodable image", None, None, None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # truncated or corrupt streams
        return None, f"corrupt: {type(err).__name__}: {err}", fmt, w, h
    return img, None, fmt, w, h


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE) -> Decoded:
    """Decode `data` fully and normalise it to 8-bit RGB; never raises for bad input."""
    img, reason, fmt, _, _ = _load(data, max_pixels, max_side, reduced=False)
    if img is None:
        return Decoded(None, reason, fmt)
    mode = img.mode
    try:
        rgb = to_rgb(ImageOps.exif_transpose(img))
    except (OSError, ValueError) as err:
        return Decoded(None, f"corrupt: cannot convert mode {mode}: {err}", fmt, mode)
    return Decoded(rgb, None, fmt, mode)


def verify_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE) -> Verified:
    """Prove `data` is a complete, decodable image without building the full-size RGB image; never raises for bad input.

    Same guards and failure reasons as decode_image. A JPEG is decoded at 1/8 scale (on the crawl benchmark's noisy
    JPEGs 0.46 ms of CPU each against decode_image's 0.91). Other formats are fully loaded. decode_image's mode
    conversion runs too, on the loaded (for a JPEG, reduced) image, so a conversion failure is caught the same way.
    """
    img, reason, fmt, w, h = _load(data, max_pixels, max_side, reduced=True)
    if img is None:
        return Verified(False, reason, w, h, fmt)
    try:
        to_rgb(ImageOps.exif_transpose(img))
    except (OSError, ValueError) as err:
        return Verified(False, f"corrupt: cannot convert mode {img.mode}: {err}", w, h, fmt)
    return Verified(True, None, w, h, fmt)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, palettes expanded, 16-bit and float scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((arr / peak * 255.0).clip(0, 255).astype("uint8"), "L")
    elif img.mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / (hi - lo or 1.0) * 255.0).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
