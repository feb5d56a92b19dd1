"""The card's figures as PNG files: emotion distribution, CLIP-score histograms with the cut, sample grids, top words.

Pure drawing with matplotlib's object API (Agg canvas, no pyplot state); it reads plain Python data and decides nothing.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Sequence

from emocurate.core.emotions import polarity_of

POLARITY_COLOURS = {"positive": "#e6942e", "negative": "#4a6fa5"}
DROPPED_COLOUR = "#b9b9b9"
THUMB_PX = 160
DPI = 100

# English stop words plus the boilerplate every emotion-prior caption shares ("the image evokes a sense of ...").
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each even few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let like may me might
    more most much must my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon very via was we were what when where which while who whom why will with
    within without would you your yours yourself yourselves image picture photo photograph painting artwork
    scene evokes evoke evoking conveys convey conveying depicts depicting shows showing feeling feelings sense
    emotion emotional creates creating captures capturing overall one two
    """.split()
)
WORD_RE = re.compile(r"[a-z][a-z'-]+")


def _figure(width_in: float, height_in: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # captions may hold characters the font lacks: they show as boxes, not as warnings
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(path, format="png", metadata={"Software": None})  # no version string: same data, same bytes
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return (n + cols - 1) // cols, cols


def emotion_distribution(counts: dict[str, int], emotions: Sequence[str], path: Path) -> Path:
    """Bar chart of rows per emotion, coloured by polarity, each bar labelled with its count."""
    from matplotlib.patches import Patch

    fig = _figure(1.0 + 0.9 * len(emotions), 3.4)
    ax = fig.add_subplot()
    values = [counts.get(e, 0) for e in emotions]
    bars = ax.bar(list(emotions), values, color=[POLARITY_COLOURS[polarity_of(e)] for e in emotions])
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(f"Emotion distribution ({sum(values)} images)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.margins(y=0.15)
    handles = [Patch(color=c, label=p) for p, c in POLARITY_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _save(fig, path)


def clip_histograms(scores: dict[str, dict[str, list[float]]], cuts: dict[str, float | None], path: Path) -> Path:
    """One histogram per emotion of CLIP scores, kept vs dropped by the CLIP filter, with the cut as a dashed line.

    `scores[emotion]` = {"kept": [...], "dropped": [...]}; `cuts[emotion]` = lowest kept score (None when unknown).
    """
    emotions = list(scores)
    rows, cols = _grid(len(emotions))
    fig = _figure(3.0 * cols, 2.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, emotion in zip(axes.flat, emotions):
        kept, dropped = scores[emotion]["kept"], scores[emotion]["dropped"]
        everything = kept + dropped
        if everything:
            lo, hi = min(everything), max(everything)
            bins = [lo + (hi - lo or 1e-3) * i / 20 for i in range(21)]
            ax.hist([dropped, kept], bins=bins, stacked=True, label=["dropped", "kept"],
                    color=[DROPPED_COLOUR, POLARITY_COLOURS[polarity_of(emotion)]])
        if cuts.get(emotion) is not None:
            ax.axvline(cuts[emotion], color="black", linestyle="--", linewidth=1, label=f"cut {cuts[emotion]:.3f}")
        ax.margins(y=0.35)  # room for the legend above the bars
        ax.set_title(f"{emotion}: {len(kept)} kept, {len(dropped)} dropped", fontsize=9)
        ax.set_xlabel("CLIP image-caption cosine", fontsize=8)
        ax.tick_params(labelsize=7)
        if everything:
            ax.legend(fontsize=6, frameon=False, loc="upper left")
        else:  # an emotion of the dataset with nothing scored: say so rather than draw empty axes
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no CLIP-scored records", ha="center", va="center", fontsize=8, color="grey",
                    transform=ax.transAxes)
    for ax in list(axes.flat)[len(emotions):]:
        ax.set_axis_off()
    return _save(fig, path)


def _thumbnail(data: bytes):
    """A small RGB array of an image's bytes, or None when it does not decode."""
    import numpy as np

    from emocurate.core.decode import decode_image

    decoded = decode_image(data)
    if decoded.image is None:
        return None
    image = decoded.image
    image.thumbnail((THUMB_PX, THUMB_PX))
    return np.asarray(image)  # (H, W, 3) uint8


def sample_grid(emotion: str, images: Sequence[bytes], captions: Sequence[str], path: Path, cols: int = 4) -> Path:
    """Thumbnails of some rows of one emotion, each with its caption truncated to two short lines."""
    rows, cols = _grid(len(images), cols)
    height = 2.7 * rows + 0.4
    fig = _figure(2.2 * cols, height, layout=None)  # fixed margins: constrained layout is slow with many images
    fig.suptitle(f"{emotion}: {len(images)} random samples", fontsize=10, y=1 - 0.1 / height)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / height, wspace=0.05, hspace=0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, data, caption in zip(axes.flat, images, captions):
        thumb = _thumbnail(data)
        if thumb is not None:
            ax.imshow(thumb)
        text = textwrap.shorten(" ".join(str(caption).split()), width=70, placeholder="...")
        ax.set_title("\n".join(textwrap.wrap(text, 28)[:3]), fontsize=7, parse_math=False)
    return _save(fig, path)


def caption_words(caption: str) -> list[str]:
    """Lower-cased words of a caption with stop words and very short words removed."""
    return [w.strip("'-") for w in WORD_RE.findall(caption.lower()) if w.strip("'-") not in STOP_WORDS and len(w) > 2]


def top_words(captions: dict[str, list[str]], path: Path, k: int = 10) -> Path:
    """Horizontal bar charts of the `k` most frequent caption words per emotion (stop words removed)."""
    emotions = list(captions)
    rows, cols = _grid(len(emotions))
    fig = _figure(3.0 * cols, 0.25 * k * rows + 0.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, emotion in zip(axes.flat, emotions):
        counts = Counter(w for c in captions[emotion] if c for w in caption_words(c)).most_common(k)
        words = [w for w, _ in counts][::-1]
        ax.barh(words, [n for _, n in counts][::-1], color=POLARITY_COLOURS[polarity_of(emotion)])
        ax.set_title(f"{emotion}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(emotions):]:
        ax.set_axis_off()
    return _save(fig, path)

