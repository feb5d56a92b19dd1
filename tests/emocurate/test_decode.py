import io

import numpy as np
import pytest
from PIL import Image

from emocurate.decode import decode_image


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
