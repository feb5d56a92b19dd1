"""Figures are real PNGs sized to their content; caption words drop stop words and boilerplate."""

import io

from PIL import Image

from emocurate.publish import figures


def test_caption_words_drop_stop_words_and_boilerplate():
    words = figures.caption_words("The image evokes a sense of awe: a vast, star-lit sky over the mountains.")
    assert words == ["awe", "vast", "star-lit", "sky", "mountains"]


def test_each_figure_is_a_png(tmp_path):
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(jpeg, "JPEG")
    paths = [
        figures.emotion_distribution({"awe": 3, "fear": 1}, ["awe", "fear"], tmp_path / "d.png"),
        figures.clip_histograms({"awe": {"kept": [0.3, 0.31], "dropped": [0.1]}, "fear": {"kept": [], "dropped": []}},
                                {"awe": 0.3, "fear": None}, tmp_path / "h.png"),
        figures.sample_grid("awe", [jpeg.getvalue(), b"not an image"], ["a $caption$ with {braces}", "x"],
                            tmp_path / "s.png"),
        figures.top_words({"awe": ["vast sky", "vast sea"], "fear": []}, tmp_path / "w.png"),
    ]
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width >= 200 and img.height >= 150
