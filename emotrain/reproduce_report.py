"""OUT/report.md and OUT/results.json of `emotrain reproduce`: every row measured, beside the paper's number, with
95% intervals, which differences are significant (in words), EmoGen's protocol, time per row and skipped rows.

Reads the rows' results.json only; computes no metric.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from emotrain.eval.report import MAIN_COLUMNS, md_table, overall_sections

PAPER: dict[str, dict[str, float]] = {  # FID, LPIPS, Emo-A, Sem-C, Sem-D as printed in the paper
    "sd": dict(fid=44.05, lpips=0.687, emo_a=0.7077, sem_c=0.608, sem_d=0.0199),
    "textual-inversion": dict(fid=50.51, lpips=0.702, emo_a=0.7487, sem_c=0.605, sem_d=0.0282),
    "dreambooth": dict(fid=46.89, lpips=0.661, emo_a=0.7050, sem_c=0.614, sem_d=0.0178),
    "EmoGen": dict(fid=41.60, lpips=0.717, emo_a=0.7625, sem_c=0.633, sem_d=0.0335),
    "coemogen": dict(fid=40.66, lpips=0.732, emo_a=0.8015, sem_c=0.641, sem_d=0.0349),
    "wo-lsem": dict(fid=50.32, lpips=0.698, emo_a=0.6590, sem_c=0.562, sem_d=0.0255),
    "wo-emotion-loras": dict(fid=45.30, lpips=0.713, emo_a=0.7537, sem_c=0.625, sem_d=0.0308),
    "wo-polarity-loras": dict(fid=41.47, lpips=0.724, emo_a=0.7883, sem_c=0.638, sem_d=0.0336),
    "captions-plain-one-sentence": dict(fid=43.32, lpips=0.714, emo_a=0.7529, sem_c=0.612, sem_d=0.0303),
    "captions-plain-detailed": dict(fid=44.91, lpips=0.716, emo_a=0.7368, sem_c=0.604, sem_d=0.0315),
    "captions-emotion-detailed": dict(fid=42.58, lpips=0.724, emo_a=0.7742, sem_c=0.628, sem_d=0.0338),
    "input-learnable": dict(fid=43.77, lpips=0.705, emo_a=0.7849, sem_c=0.593, sem_d=0.0289),
    "input-text": dict(fid=42.38, lpips=0.697, emo_a=0.7892, sem_c=0.611, sem_d=0.0275),
    "lsem-mae": dict(fid=42.40, lpips=0.721, emo_a=0.7883, sem_c=0.626, sem_d=0.0311),
    "lsem-mse": dict(fid=41.87, lpips=0.725, emo_a=0.7904, sem_c=0.618, sem_d=0.0327),
    "lsem-kl": dict(fid=48.36, lpips=0.693, emo_a=0.7001, sem_c=0.609, sem_d=0.0272),
}


def write_table_report(plan, rows: list, done: dict, skipped: dict, eval_cfg) -> dict:
    """Merge the rows' results into OUT/results.json and render OUT/report.md; return the merged results."""
    from emotrain.eval.evaluate import write_json

    labels = {r.key: r.label for r in rows}
    models, meta = {}, {}
    for key, results in done.items():
        label = labels.get(key, key)
        models[label] = results["models"][label]
        meta[label] = {"key": key, "times": results.get("times", {}), "paper": PAPER.get(key),
                       "generation": results["settings"].get("generation"),
                       "report": f"rows/{key}/eval/report.md"}
    first = next(iter(done.values()), None)
    merged = {"table": plan.table, "dataset": plan.dataset, "models": models, "rows": meta, "skipped": skipped,
              "settings": first["settings"] if first else None}
    plan.out.mkdir(parents=True, exist_ok=True)
    write_json(plan.out / "results.json", merged)
    (plan.out / "report.md").write_text(render(plan, merged, eval_cfg.intervals.level))
    return merged


def render(plan, merged: dict, level: float) -> str:
    models, meta = merged["models"], merged["rows"]
    columns = [c for c in MAIN_COLUMNS if any(m["overall"].get(c[0]) is not None for m in models.values())]
    table = []
    for label, entry in models.items():
        table.append((f"**{label}**", entry["overall"], entry.get("intervals", {})))
        if meta[label]["paper"]:
            table.append((f"*{label} (reported in the paper)*", meta[label]["paper"]))
    settings = merged["settings"] or {}
    tiny = [label for label, m in meta.items() if str(_base_model(plan, m)).startswith("tiny:")]
    lines = [f"# Table {plan.table} of the CoEmoGen paper, reproduced", "",
             f"Written by `emotrain reproduce --table {plan.table}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; "
             f"dataset `{plan.dataset}`; every number and setting is in `results.json`, each row's own report in "
             "`rows/<row>/eval/report.md`.", ""]
    if tiny:
        which = "every row was" if len(tiny) == len(meta) else f"rows {', '.join(tiny)} were"
        lines += [f"> **These numbers are noise**: {which} made with tiny random models built in code. The report "
                  "shows the layout, not CoEmoGen's quality.", ""]
    lines += ["## Results", "", *md_table(table, columns), "",
              "Rows in *italics* are the numbers **reported in the paper** (EmoSet, 1,000 images per emotion, their "
              "backbones), not measured here.", ""]
    lines += overall_sections(models, level)
    lines += ["## Rows", "", "| Row | Steps trained | Images per emotion | Train s | Generate s | Evaluate s | Report |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for label, m in meta.items():
        t = m["times"]
        images = models[label]["images"]
        steps = _steps(plan, m["key"])
        lines.append(f"| {label} | {steps} | {min(images.values()) if images else 0} | {_s(t, 'train')} | "
                     f"{_s(t, 'generate')} | {_s(t, 'evaluate')} | [{m['report']}]({m['report']}) |")
    lines.append("")
    if merged["skipped"]:
        lines += ["## Rows not run", ""] + [f"- **{k}**: {why}" for k, why in merged["skipped"].items()] + [""]
    if plan.table == 1 and "EmoGen" not in models:
        lines += ["EmoGen is not retrained here (its code has no licence); add its images as a row with "
                  "`--images EmoGen=DIR` (one folder per emotion).", ""]
    if settings.get("device"):
        lines += [f"Evaluated on `{settings['device']}`.", ""]
    return "\n".join(lines)


def _base_model(plan, meta: dict) -> str | None:
    """The Stable Diffusion a row started from: its run's config.json, or the SD row's generation record."""
    import json

    config = Path(plan.runs) / meta["key"] / "config.json"
    if config.is_file():
        return json.loads(config.read_text())["base_model"]["id"]
    records = [v for v in (meta.get("generation") or {}).values() if isinstance(v, dict) and "model" in v]
    return records[0]["model"] if records else None


def _s(times: dict, step: str) -> str:
    return f"{times[step]:.1f}" if step in times else "–"


def _steps(plan, key: str) -> str:
    import json

    config = Path(plan.runs) / key / "config.json"
    return str(json.loads(config.read_text())["steps"]) if config.is_file() else "–"
