"""OUT/report.md and OUT/results.json of `emotrain reproduce`: every row measured, beside the paper's number, with
95% intervals, which differences are significant (in words), EmoGen's protocol, time per row and skipped rows.

Reads the rows' results.json only; computes no metric.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from emotrain.eval.report import MAIN_COLUMNS, _table, overall_sections


def write_table_report(plan, rows: list, done: dict, skipped: dict, eval_cfg) -> dict:
    """Merge the rows' results into OUT/results.json and render OUT/report.md; return the merged results."""
    from emotrain.eval.evaluate import write_json
    from emotrain.reproduce import PAPER

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
    lines += ["## Results", "", *_table(table, columns), "",
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
