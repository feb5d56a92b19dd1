"""report.md in the layout of the paper's Table 1, a sample grid per emotion, and a bar chart comparing models.

Reads only the results dict that `evaluate` wrote to results.json (plus the image paths for the grids).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from emotrain.eval.config import ReportConfig

# (key in results, column title, format, is a fraction shown as %)
MAIN_COLUMNS = [("fid", "FID↓", "{:.2f}"), ("lpips", "LPIPS↑", "{:.3f}"), ("emo_a", "Emo-A↑", "{:.2%}"),
                ("sem_c", "Sem-C↑", "{:.3f}"), ("sem_d", "Sem-D↑", "{:.4f}")]
EXTRA_COLUMNS = [("fid_mean_per_emotion", "FID per emotion (mean)↓", "{:.2f}"),
                 ("emo_a_polarity", "Emo-A polarity↑", "{:.2%}"), ("emo_a_target_prob", "P(target)↑", "{:.3f}"),
                 ("sem_d_cos", "Sem-D 1-cos↑", "{:.4f}"), ("clip_score", "CLIP score↑", "{:.2f}")]
PER_EMOTION_EXTRAS = [c for c in EXTRA_COLUMNS if c[0] != "fid_mean_per_emotion"]

PAPER_TABLE1 = {
    "Stable Diffusion": {"fid": 44.05, "lpips": 0.687, "emo_a": 0.7077, "sem_c": 0.608, "sem_d": 0.0199},
    "Textual Inversion": {"fid": 50.51, "lpips": 0.702, "emo_a": 0.7487, "sem_c": 0.605, "sem_d": 0.0282},
    "DreamBooth": {"fid": 46.89, "lpips": 0.661, "emo_a": 0.7050, "sem_c": 0.614, "sem_d": 0.0178},
    "EmoGen": {"fid": 41.60, "lpips": 0.717, "emo_a": 0.7625, "sem_c": 0.633, "sem_d": 0.0335},
    "CoEmoGen": {"fid": 40.66, "lpips": 0.732, "emo_a": 0.8015, "sem_c": 0.641, "sem_d": 0.0349},
}
"""Table 1 of the CoEmoGen paper (EmoSet, 1,000 images per emotion), for reference rows only."""

CHART_METRICS = [("fid", "FID ↓"), ("lpips", "LPIPS ↑"), ("emo_a", "Emo-A ↑"), ("sem_c", "Sem-C ↑"),
                 ("sem_d", "Sem-D ↑"), ("clip_score", "CLIP score ↑")]


def write_report(results: dict, sets: list, out_dir: Path, cfg: ReportConfig) -> list[Path]:
    """Write report.md, grid_<emotion>.png per emotion and metrics.png into `out_dir`; return the paths."""
    out_dir = Path(out_dir)
    emotions = results["settings"]["emotions"]
    grids = {e: write_grid(sets, e, out_dir / f"grid_{e}.png", cfg.grid_images) for e in emotions}
    chart = write_chart(results, out_dir / "metrics.png")
    (out_dir / "report.md").write_text(render_markdown(results, grids, chart, cfg))
    return [out_dir / "report.md", chart, *grids.values()]


def _present(results: dict, columns: list, where: str = "overall", emotion: str | None = None) -> list:
    """The columns that at least one model has a value for."""
    def value(entry, key):
        return entry[where].get(key) if emotion is None else entry[where].get(emotion, {}).get(key)

    return [c for c in columns if any(value(m, c[0]) is not None for m in results["models"].values())]


def _cell(key: str, fmt: str, values: dict, intervals: dict) -> str:
    if values.get(key) is None:
        return "–"
    if key in intervals:
        low, high = intervals[key]
        return f"{fmt.format(values[key])} [{fmt.format(low)}, {fmt.format(high)}]"
    return fmt.format(values[key])


def _row(name: str, values: dict, columns: list, intervals: dict | None = None) -> str:
    return f"| {name} | " + " | ".join(_cell(key, fmt, values, intervals or {}) for key, _, fmt in columns) + " |"


def md_table(rows: list[tuple], columns: list) -> list[str]:
    """`rows`: (name, values) or (name, values, intervals {key: [low, high]})."""
    lines = ["| Method | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    return lines + [_row(*row, columns) if len(row) == 2 else _row(row[0], row[1], columns, row[2]) for row in rows]


EMOGEN_COLUMNS = [("lpips", "LPIPS↑ (ours)", "{:.3f}"), ("lpips_emogen", "LPIPS↑ (EmoGen protocol)", "{:.3f}"),
                  ("sem_d", "Sem-D↑ (ours)", "{:.4f}"), ("sem_d_emogen", "Sem-D↑ (EmoGen protocol)", "{:.4f}")]


def overall_sections(models: dict, level: float = 0.95) -> list[str]:
    """The bootstrap note, the pairwise differences in words and the EmoGen-protocol table (shared with reproduce)."""
    from emotrain.eval.compare import render_differences

    lines = [f"Brackets: {level:.0%} bootstrap intervals (images resampled for FID, Emo-A and Sem-C, pairs for LPIPS and "
             "Sem-D, within each emotion; the real images are held fixed; every model is resampled with the same "
             "indices, so rows made with the same per-image seeds are compared image by image).", ""]
    differences = render_differences(models, MAIN_COLUMNS, level)
    if differences:
        lines += ["## Which differences are significant", "",
                  f"A difference is significant when its {level:.0%} bootstrap interval excludes zero.", "", *differences]
    if any(m["overall"].get("lpips_emogen") is not None or m["overall"].get("sem_d_emogen") is not None
           for m in models.values()):
        columns = [c for c in EMOGEN_COLUMNS if any(m["overall"].get(c[0]) is not None for m in models.values())]
        lines += ["## EmoGen's metric protocol, beside ours", "",
                  "EmoGen's published code (which the paper says it follows) feeds LPIPS [0, 1] images without "
                  "normalisation (LPIPS expects [-1, 1]) and draws only a few random pairs per emotion; its columns "
                  "here copy that, so numbers can be compared with published ones. Our columns are the metric as "
                  "defined. (EmoGen's Sem-D script also mixes earlier emotions into later ones' pairs: a bug we do "
                  "not copy.)", "",
                  *md_table([(n, m["overall"], m.get("intervals", {})) for n, m in models.items()], columns), ""]
    return lines


def render_markdown(results: dict, grids: dict, chart: Path, cfg: ReportConfig) -> str:
    settings = results["settings"]
    models = results["models"]
    main = _present(results, MAIN_COLUMNS) + _present(results, EXTRA_COLUMNS)
    rows = [(name, m["overall"], m.get("intervals", {})) for name, m in models.items()]
    if cfg.paper_reference:
        rows += [(f"*{name} (reported in the paper)*", values) for name, values in PAPER_TABLE1.items()]
    counts = ", ".join(f"{name}: {sum(m['images'].values())} images" for name, m in models.items())
    lines = [
        "# Evaluation report", "",
        f"Written by `emotrain eval` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, device `{settings['device']}`. "
        f"Every number and setting is in `results.json`.", "",
        f"Emotions: {', '.join(settings['emotions'])}. {counts}.", "",
        "## Overall (the layout of the paper's Table 1)", "",
        *md_table(rows, main), "",
    ]
    if cfg.paper_reference:
        lines += ["Rows in *italics* are the numbers **reported in the paper** (Table 1: EmoSet, 1,000 images per emotion, "
                  "their backbones); they were not measured here. The extra columns are ours.", ""]
    lines += overall_sections(models, settings["config"].get("intervals", {}).get("level", 0.95))
    lines += ["## How each number was computed", "", *_sampler_notes(settings), *_method_notes(settings), ""]
    lines += ["## Per emotion", ""]
    for emotion in settings["emotions"]:
        columns = _present(results, MAIN_COLUMNS + PER_EMOTION_EXTRAS, "per_emotion", emotion)
        per = [(name, m["per_emotion"][emotion]) for name, m in models.items() if emotion in m["per_emotion"]]
        lines += [f"### {emotion}", "", *md_table(per, columns), "", f"![{emotion} samples]({grids[emotion].name})", ""]
    lines += ["## Models compared per metric", "", f"![metrics]({chart.name})", ""]
    return "\n".join(lines)


def _sampler_notes(settings: dict) -> list[str]:
    """How the rows generated here were sampled (one sampler for all of them); nothing for --images folders."""
    generation = settings.get("generation") or {}
    notes = []
    for name, entry in generation.items():
        sampler = entry.get("sampler") if isinstance(entry, dict) else None
        if sampler:
            notes.append(f"- **Sampling, {name}**: `{sampler['scheduler']}` ({sampler['diffusers_class']}), "
                         f"{sampler['steps']} steps, guidance {sampler['guidance']:g}; adapters on the unconditional "
                         f"half: {sampler['adapters_on_unconditional']}.")
    return notes


def _method_notes(settings: dict) -> list[str]:
    b, cfg = settings["backbones"], settings["config"]
    notes = []
    if "fid" in b:
        notes.append(f"- **FID**: {b['fid']['library']}, mode `{b['fid']['mode']}`, feature extractor "
                     f"`{b['fid']['feature_extractor']}` (sha256 {b['fid']['feature_extractor_sha256'][:12]}); per emotion "
                     f"against the real images of that emotion; the table's FID is pooled ({b['fid']['pooled']}).")
    if "lpips" in b:
        notes.append(f"- **LPIPS**: AlexNet LPIPS v0.1, inputs in [-1, 1], image size {b['lpips']['image_size']}, up to "
                     f"{b['lpips']['pairs_requested']} random pairs within each emotion; mean over emotions.")
    if "emo_a" in b:
        notes.append(f"- **Emo-A**: `{b['emo_a']['backend']}` classifier on `{b['emo_a']['model']}`"
                     f"{' with probe ' + str(b['emo_a']['probe']) if b['emo_a']['probe'] else ''}: "
                     f"{b['emo_a']['emo_a']}; polarity = {b['emo_a']['emo_a_polarity']}.")
    if "sem_c" in b:
        notes.append(f"- **Sem-C**: mean over images of max(top softmax of `{b['sem_c']['places365']}`, top softmax of "
                     f"`{b['sem_c']['imagenet']}`).")
    if "sem_d" in b:
        notes.append(f"- **Sem-D**: `{b['sem_d']['clip_model']}` {b['sem_d']['features']}; {b['sem_d']['sem_d']}; "
                     f"up to {b['sem_d']['pairs_requested']} random pairs within each emotion (never across emotions).")
    if "clip_score" in b:
        notes.append(f"- **CLIP score** (not in the paper): {b['clip_score']['score']}, against each emotion's captions "
                     f"(up to {cfg['clip_score']['max_captions']}).")
    return notes


def write_grid(sets: list, emotion: str, path: Path, per_row: int, thumb: int = 96) -> Path:
    """One row of sample thumbnails per model, labelled with the model's name."""
    from PIL import Image, ImageDraw

    label_w = 140
    rows = [s for s in sets if emotion in s.images]
    grid = Image.new("RGB", (label_w + per_row * thumb, max(1, len(rows)) * thumb), "white")
    draw = ImageDraw.Draw(grid)
    for r, s in enumerate(rows):
        draw.text((4, r * thumb + thumb // 2 - 6), s.name[:22], fill="black")
        for c, file in enumerate(s.images[emotion][:per_row]):
            with Image.open(file) as img:
                grid.paste(img.convert("RGB").resize((thumb, thumb)), (label_w + c * thumb, r * thumb))
    grid.save(path)
    return path


def write_chart(results: dict, path: Path) -> Path:
    """A bar chart per metric (FID, LPIPS, Emo-A, Sem-C, Sem-D, CLIP score), one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    metrics = [(k, t) for k, t in CHART_METRICS if any(m["overall"].get(k) is not None for m in models.values())]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3 * max(1, len(metrics)), 3.2), squeeze=False)
    names = list(models)
    for ax, (key, title) in zip(axes[0], metrics):
        values = [models[n]["overall"].get(key, float("nan")) for n in names]
        ax.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
        ax.set_title(title)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
