"""Small real image files (and deliberately bad ones) built in code, for the curation tests."""

import io

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(seed: int, size=(24, 16), mode="RGB") -> Image.Image:
    """A distinct small image per seed (smooth gradient + noise, so JPEG bytes differ between seeds)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    base = np.linspace(0, 255, w)[None, :, None] * rng.uniform(0.2, 1.0, (1, 1, 3))
    arr = (base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(arr, "RGB")


def jpeg(seed: int, size=(24, 16)) -> bytes:
    return encode(photo(seed, size), "JPEG", quality=90)


def bad_files() -> dict[str, bytes]:
    """name -> bytes for every kind of bad input the pipeline must record, not crash on."""
    good = jpeg(99, (64, 48))
    return {
        "empty.jpg": b"",
        "text_named.jpg": b"just some text, not an image\n",
        "truncated.jpg": good[: len(good) // 2],
        "corrupt.png": encode(photo(98), "PNG")[:40] + b"\x00garbage" * 10,
        "bomb.png": encode(Image.new("1", (9000, 9000)), "PNG"),
        "huge_side.png": encode(Image.new("L", (25000, 1)), "PNG"),
    }


def odd_modes() -> dict[str, bytes]:
    """Valid images in modes that must be normalised to RGB and processed."""
    rgba = photo(11).convert("RGBA")
    rgba.putalpha(100)
    wide = (np.asarray(photo(12).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return {
        "cmyk.jpg": encode(photo(10).convert("CMYK"), "JPEG"),
        "alpha.png": encode(rgba, "PNG"),
        "gray16.png": encode(Image.fromarray(wide), "PNG"),
        "palette.png": encode(photo(13).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette_transparent.gif": encode(photo(14).convert("P"), "GIF", transparency=0),
    }


def write_mixed_inputs(root):
    """Nine files for three shards of 3: labelled and unlabelled photos, a byte-identical copy, a truncated file."""
    files = {"awe/a.jpg": jpeg(1), "fear/f.jpg": jpeg(2), "misc/copy.jpg": jpeg(1),
             "misc/truncated.jpg": bad_files()["truncated.jpg"], **{f"misc/x{i}.jpg": jpeg(10 + i) for i in range(5)}}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def mixed_input_overrides(folder, *extra) -> list[str]:
    """Demo-recipe overrides for `write_mixed_inputs`' folder: three shards of 3, batches of 2, short captions."""
    return [f"sources=[folder:{folder}]", "shard_size=3", "classify.batch_size=2", "caption.batch_size=2",
            "caption.max_new_tokens=6", "clip_filter.batch_size=2", *extra]
