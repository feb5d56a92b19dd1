import io

import numpy as np
import pytest
from PIL import Image

import random

from emocurate.core.decode import decode_image, verify_image


def _encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "img, fmt",
    [
        (Image.new("CMYK", (20, 10), (0, 255, 0, 0)), "JPEG"),
        (Image.new("RGBA", (20, 10), (255, 0, 0, 0)), "PNG"),
        (Image.new("P", (20, 10), 3), "PNG"),
        (Image.new("L", (20, 10), 128), "PNG"),
        (Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)), "PNG"),
    ],
)
def test_modes_normalise_to_rgb(img, fmt):
    out = decode_image(_encode(img, fmt))
    assert out.reason is None and out.image.mode == "RGB" and out.image.size == (20, 10)


def test_alpha_is_composited_on_white():
    out = decode_image(_encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    assert out.image.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_white_stays_white():
    out = decode_image(_encode(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)), "PNG"))
    assert out.image.getpixel((0, 0)) == (255, 255, 255)


def test_bad_inputs_have_reasons():
    good = _encode(Image.new("RGB", (64, 64), "blue"), "JPEG")
    assert decode_image(b"").reason == "empty_file"
    assert decode_image(b"hello, I am text").reason.startswith("not_an_image")
    assert decode_image(good[: len(good) // 2]).reason.startswith("corrupt")
    huge = _encode(Image.new("1", (30_000, 30_000)), "PNG")  # tiny file, 900 MP: a decompression bomb
    assert decode_image(huge).reason.startswith("too_large")
    assert decode_image(good, max_side=32).reason.startswith("too_large")


def _noisy_jpeg(w=120, h=80, **kw):
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)  # (h, w, 3): high entropy, many MCUs
    return _encode(Image.fromarray(arr), "JPEG", quality=85, **kw)


def _bad_jpegs(good):
    """Truncations at many points, 16 random bytes over the middle, and an early end-of-image marker."""
    cases = {f"truncated to {f:.0%}": good[: int(len(good) * f)] for f in (0.1, 0.5, 0.9, 0.99)}
    cases["last byte cut"] = good[:-1]
    for seed in range(12):
        rnd, bad = random.Random(seed), bytearray(good)
        pos = rnd.randrange(len(good) // 4, len(good) * 3 // 4)
        bad[pos : pos + 16] = bytes(rnd.randrange(256) for _ in range(16))
        cases[f"corrupt middle {seed}"] = bytes(bad)
    cases["early EOI"] = good[: len(good) // 2] + b"\xff\xd9"
    return cases


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"subsampling": 0}])
def test_verify_fails_exactly_where_a_full_decode_fails(kw):
    good = _noisy_jpeg(**kw)
    failed = 0
    for name, data in _bad_jpegs(good).items():
        full, quick = decode_image(data), verify_image(data)
        assert quick.reason == full.reason, name
        assert quick.ok == (full.image is not None), name
        failed += not quick.ok
    assert failed >= 5  # every truncation at least: the 1/8-scale decode still reads the whole stream


def test_verify_rejects_the_same_bad_inputs_with_the_same_reasons():
    good = _encode(Image.new("RGB", (64, 64), "blue"), "JPEG")
    huge = _encode(Image.new("1", (30_000, 30_000)), "PNG")  # tiny file, 900 MP: a decompression bomb
    cases = {
        "empty": (b"", {}),
        "text named .jpg": (b"hello, I am text", {}),
        "html": (b"<!doctype html><html><body>not found</body></html>", {}),
        "truncated": (good[: len(good) // 2], {}),
        "bomb": (huge, {}),
        "huge side": (good, {"max_side": 32}),
        "huge pixels": (good, {"max_pixels": 64 * 63}),
    }
    for name, (data, kw) in cases.items():
        full, quick = decode_image(data, **kw), verify_image(data, **kw)
        assert full.image is None and not quick.ok, name
        assert quick.reason == full.reason, name
    assert verify_image(b"").reason == "empty_file"
    assert verify_image(b"hello, I am text").reason.startswith("not_an_image")
    assert verify_image(good[: len(good) // 2]).reason.startswith("corrupt")
    assert verify_image(huge).reason.startswith("too_large")
    assert verify_image(good, max_side=32).reason == "too_large: 64x64 exceeds max_pixels=64000000 / max_side=32"


@pytest.mark.parametrize(
    "img, fmt",
    [
        (Image.new("CMYK", (20, 10), (0, 255, 0, 0)), "JPEG"),
        (Image.new("L", (5, 3), 128), "JPEG"),
        (Image.new("RGB", (7, 9), "red"), "JPEG"),
        (Image.new("RGBA", (20, 10), (255, 0, 0, 0)), "PNG"),
        (Image.new("P", (20, 10), 3), "PNG"),
        (Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)), "PNG"),
        (Image.new("RGB", (20, 10), "green"), "WEBP"),
        (Image.new("RGB", (20, 10), "green"), "GIF"),
    ],
)
def test_verify_accepts_good_images_and_reports_their_full_size(img, fmt):
    out = verify_image(_encode(img, fmt))
    assert out.ok and out.reason is None
    assert (out.width, out.height, out.format) == (*img.size, fmt)


def test_verify_truncated_png_fails_like_decode():
    good = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)), "PNG")
    cut = good[: len(good) * 2 // 3]
    assert not verify_image(cut).ok and verify_image(cut).reason == decode_image(cut).reason
