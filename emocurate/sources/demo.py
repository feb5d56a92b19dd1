"""`demo`: writes a few dozen real photos from scikit-image (plus variants and deliberately bad files) into a folder,
then reads it as `folder:` does. Offline; the emotion folder names are illustrative, not real annotations.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

from emocurate.sources.item import SourceItem

# skimage.data images that ship with the wheel (no download), with an illustrative folder each
PHOTOS = {
    "astronaut": "amusement", "chelsea": "contentment", "coffee": "contentment", "rocket": "excitement",
    "hubble_deep_field": "awe", "colorwheel": "amusement", "immunohistochemistry": "unlabelled", "retina": "unlabelled",
    "camera": "unlabelled", "brick": "unlabelled", "grass": "unlabelled", "gravel": "unlabelled", "moon": "awe",
    "page": "unlabelled", "text": "unlabelled", "coins": "unlabelled", "clock": "unlabelled", "cell": "unlabelled",
    "microaneurysms": "unlabelled", "checkerboard": "unlabelled", "horse": "unlabelled", "logo": "unlabelled",
}
MAX_SIDE = 384  # keeps the demo quick; real runs keep the original bytes


def _to_pil(array):
    import numpy as np
    from PIL import Image

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(array)


def _encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def demo_files() -> dict[str, bytes]:
    """Relative path -> file bytes: real photos, edited variants, odd modes, a duplicate and bad files."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        import skimage.data
    except ImportError as err:
        raise RuntimeError("the demo source needs scikit-image: pip install -e '.[demo]' (or '.[dev]')") from err

    files: dict[str, bytes] = {}
    photos = {}
    for name, folder in PHOTOS.items():
        img = _to_pil(getattr(skimage.data, name)())
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        photos[name] = img
        fmt, ext = ("PNG", "png") if img.mode in ("RGBA", "L") and name == "logo" else ("JPEG", "jpg")
        files[f"{folder}/{name}.{ext}"] = _encode(img, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    left, right, _ = skimage.data.stereo_motorcycle()
    for side, arr in (("left", left), ("right", right)):
        img = _to_pil(arr)
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        files[f"excitement/motorcycle_{side}.jpg"] = _encode(img, "JPEG", quality=90)
    # edited variants: new bytes, so they are new records (not duplicates)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "colorwheel"):
        img = photos[name].convert("RGB")
        w, h = img.size
        files[f"variants/{name}_mirror.jpg"] = _encode(ImageOps.mirror(img), "JPEG", quality=85)
        files[f"variants/{name}_crop.jpg"] = _encode(img.crop((w // 8, h // 8, w - w // 8, h - h // 8)), "JPEG", quality=85)
        files[f"variants/{name}_gray.png"] = _encode(ImageOps.grayscale(img), "PNG")
    # odd modes, normalised to RGB by ingest
    files["modes/coffee_cmyk.jpg"] = _encode(photos["coffee"].convert("CMYK"), "JPEG")
    files["modes/chelsea_palette.png"] = _encode(photos["chelsea"].convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    rgba = photos["astronaut"].convert("RGBA")
    rgba.putalpha(128)
    files["modes/astronaut_alpha.png"] = _encode(rgba, "PNG")
    wide = (np.asarray(photos["camera"], dtype=np.uint16) * 257).astype(np.uint16)
    files["modes/camera_16bit.png"] = _encode(Image.fromarray(wide), "PNG")
    # a byte-identical copy: dropped by dedup
    files["unlabelled/astronaut_copy.jpg"] = files["amusement/astronaut.jpg"]
    # bad files: each is recorded as dropped by ingest with its reason
    files["bad/empty.jpg"] = b""
    files["bad/notes.jpg"] = b"this is a text file with a .jpg name\n"
    files["bad/truncated.jpg"] = files["excitement/rocket.jpg"][: len(files["excitement/rocket.jpg"]) // 3]
    files["bad/bomb.png"] = _encode(Image.new("1", (9000, 9000)), "PNG")  # 81 MP in a few KB
    return files


def write_demo_folder(folder: Path) -> Path:
    """Write the demo files once (a marker written last says the folder is whole)."""
    marker = folder / ".complete"
    if not marker.exists():
        for rel, data in demo_files().items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        marker.write_text("ok\n")
    return folder


def iter_demo(folder: Path, spec: str) -> Iterator[SourceItem]:
    from emocurate.sources.folder import iter_folder

    write_demo_folder(folder)
    for item in iter_folder(str(folder), spec):
        yield item
