"""`emotrain reproduce --table 1|2`: every row of one of the paper's tables, trained (or reused), generated, evaluated,
and written to one report. Resumable at every step: a finished row is skipped, a killed training resumes from its
last checkpoint, generation keeps the images it has, evaluation keeps a finished results.json.

Layout: RUNS/<row>/ (trained runs, shareable between tables) and OUT/rows/<row>/{images,eval,times.json}, OUT/report.md.
It does not draw progress bars (the CLI passes a `progress(task, advance, total)` callback).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from emocurate.core.recipes import recipes_root

RECIPES = recipes_root() / "train"  # the checkout's recipes/train, or the wheel's emocurate/recipes/train


@dataclass(frozen=True)
class Row:
    key: str
    """Folder name of the row's run and outputs."""
    label: str
    """The paper's row name, used in the report."""
    kind: Literal["sd", "baseline", "coemogen"]
    recipe: str | None = None
    """Recipe file under recipes/train/ (None: plain Stable Diffusion, nothing to train)."""


TABLES: dict[int, list[Row]] = {
    1: [Row("sd", "Stable Diffusion", "sd"),
        Row("textual-inversion", "Textual Inversion", "baseline", "baselines/textual-inversion.yaml"),
        Row("dreambooth", "DreamBooth", "baseline", "baselines/dreambooth.yaml"),
        Row("coemogen", "CoEmoGen (Ours)", "coemogen", "coemogen-emoset.yaml"),
        Row("wo-lsem", "w/o L_SEM", "coemogen", "ablations/table1-wo-lsem.yaml"),
        Row("wo-emotion-loras", "w/o emotion-specific LoRAs", "coemogen", "ablations/table1-wo-emotion-loras.yaml"),
        Row("wo-polarity-loras", "w/o polarity-shared LoRAs", "coemogen", "ablations/table1-wo-polarity-loras.yaml")],
    2: [Row("coemogen", "(a) prior, one sentence = (b) One-hot = (c) Cosine (default)", "coemogen", "coemogen-emoset.yaml"),
        Row("captions-plain-one-sentence", "(a) no prior, one sentence", "coemogen",
            "ablations/table2a-captions-plain-one-sentence.yaml"),
        Row("captions-plain-detailed", "(a) no prior, details", "coemogen", "ablations/table2a-captions-plain-detailed.yaml"),
        Row("captions-emotion-detailed", "(a) prior, details", "coemogen", "ablations/table2a-captions-emotion-detailed.yaml"),
        Row("input-learnable", "(b) Learnable", "coemogen", "ablations/table2b-input-learnable.yaml"),
        Row("input-text", "(b) Text", "coemogen", "ablations/table2b-input-text.yaml"),
        Row("lsem-mae", "(c) MAE", "coemogen", "ablations/table2c-lsem-mae.yaml"),
        Row("lsem-mse", "(c) MSE", "coemogen", "ablations/table2c-lsem-mse.yaml"),
        Row("lsem-kl", "(c) K-L", "coemogen", "ablations/table2c-lsem-kl.yaml")],
}
"""Table 1's EmoGen row is not retrained (its code has no licence); pass its images with `--images EmoGen=DIR`."""

# Sections of CoEmoGen's recipe that baselines do not have: overrides of these apply to CoEmoGen rows only.
COEMOGEN_ONLY = ("emotion_input", "conditioning", "hilora", "loss")

Progress = Callable[..., None]


@dataclass
class Plan:
    """What to reproduce and how; the CLI builds it from its options."""

    table: int
    dataset: str
    out: Path
    runs: Path | None = None
    """Where trained runs live (default OUT/runs); give two tables the same folder to train shared rows once."""
    rows: list[str] | None = None
    steps: int | None = None
    """Training steps of every trained row (default: each recipe's optim.max_steps)."""
    overrides: list[str] = field(default_factory=list)
    """Recipe overrides for every trained row (CoEmoGen-only sections skip the baselines)."""
    caption_datasets: dict[str, str] = field(default_factory=dict)
    """Table 2(a): caption prompt -> a dataset captioned with it (rows without one are skipped and listed)."""
    images: dict[str, Path] = field(default_factory=dict)
    """Extra rows from images made elsewhere, e.g. {"EmoGen": DIR with one folder per emotion}."""

    def __post_init__(self):
        if self.table not in TABLES:
            raise ValueError(f"--table {self.table}: the paper has tables {', '.join(map(str, TABLES))}")
        known = [r.key for r in TABLES[self.table]]
        unknown = sorted(set(self.rows or []) - set(known))
        if unknown:
            raise ValueError(f"--rows {unknown} not in Table {self.table}; its rows: {', '.join(known)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1; got {self.steps}")
        self.out, self.runs = Path(self.out), Path(self.runs) if self.runs else Path(self.out) / "runs"


def selected_rows(plan: Plan) -> list[Row]:
    return [r for r in TABLES[plan.table] if plan.rows is None or r.key in plan.rows]


def load_row_recipe(row: Row, plan: Plan):
    """The row's recipe with the plan's overrides (and --steps as optim.max_steps, so a reused run can be checked)."""
    from emotrain.baselines.recipe import load_baseline_recipe
    from emotrain.recipe import load_recipe

    path = RECIPES / row.recipe
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found: run reproduce from a checkout of the repository")
    steps = [f"optim.max_steps={plan.steps}"] if plan.steps else []
    if row.kind == "baseline":
        mine = [o for o in plan.overrides if o.split("=", 1)[0].split(".")[0] not in COEMOGEN_ONLY]
        return load_baseline_recipe(path, None, [*mine, *steps])
    return load_recipe(path, [*plan.overrides, *steps])


def row_dataset(row: Row, recipe, plan: Plan) -> str | None:
    """The dataset a row trains on: the plan's, or for Table 2(a) the one captioned with the row's prompt."""
    prompt = getattr(getattr(recipe, "paper", None), "caption_prompt", "emotion-one-sentence")
    if prompt == "emotion-one-sentence":
        return plan.dataset
    return plan.caption_datasets.get(prompt)


def reproduce(plan: Plan, eval_cfg, generation, progress: Progress | None = None) -> dict:
    """Run every selected row (train -> generate -> evaluate, each step skipped when done); write OUT/report.md.

    `eval_cfg` is an EvalConfig (its real dataset defaults to the plan's dataset), `generation` a GenerateSettings."""
    from emotrain.eval.availability import PIPELINE_FILE, check_models, eval_models
    from emotrain.eval.evaluate import check_weights
    from emotrain.reproduce_report import write_table_report

    if not eval_cfg.real.dataset:
        eval_cfg.real.dataset = plan.dataset
    rows, skipped, recipes, datasets = [], {}, {}, {}
    for row in selected_rows(plan):
        recipe = load_row_recipe(row, plan) if row.recipe else None
        dataset = row_dataset(row, recipe, plan) if recipe else plan.dataset
        if dataset is None:
            prompt = recipe.paper.caption_prompt
            reason = (f"needs a dataset captioned with the '{prompt}' prompt: build it with `emocurate build --recipe "
                      f"recipes/curate/ablations/emoset-captions-{prompt}.yaml` and pass --caption-dataset {prompt}=DIR")
            if plan.rows:
                raise ValueError(f"row {row.key} {reason}")
            skipped[row.key] = reason
            continue
        rows.append(row)
        recipes[row.key], datasets[row.key] = recipe, dataset
    # Everything that can be checked is checked before the first step: weights, every model id, the SD base.
    check_weights(eval_cfg)
    base = next((r.model for r in recipes.values() if r is not None), None)
    sd_base = base.pretrained if base else "stable-diffusion-v1-5/stable-diffusion-v1-5"
    ids = {}  # one check per (id, revision), named after the first row that needs it
    for row in rows:
        r = recipes[row.key]
        ids.setdefault((r.model.pretrained, r.model.revision) if r else (sd_base, None), (f"{row.key}: model.pretrained",
                                                                                          PIPELINE_FILE))
        if r is not None and hasattr(r, "emotion_input"):
            ids.setdefault((r.model.clip, r.model.clip_revision), (f"{row.key}: model.clip", "config.json"))
    check_models([(where, model_id, rev, probe) for (model_id, rev), (where, probe) in ids.items()] + eval_models(eval_cfg))
    for name, folder in plan.images.items():
        from emotrain.eval.evaluate import find_images

        find_images(name, folder)  # a bad folder fails now, not after hours
    emotions = _emotions(recipes, plan, eval_cfg)
    done = {}
    for row in rows:
        done[row.key] = run_row(row, recipes[row.key], datasets[row.key], plan, eval_cfg, generation, emotions, sd_base,
                                progress)
    for name, folder in plan.images.items():
        done[name] = evaluate_images(name, folder, plan.out / "rows" / name, eval_cfg, progress)
    return write_table_report(plan, rows, done, skipped, eval_cfg)


def _emotions(recipes: dict, plan: Plan, eval_cfg) -> list[str]:
    """The emotions every row generates: the recipes' data.emotions, else those in the dataset."""
    from emocurate.core.emotions import EMOTIONS
    from emotrain.data import emotion_labels, load_training_dataset

    for recipe in recipes.values():
        if recipe is not None and recipe.data.emotions:
            return list(recipe.data.emotions)
    column = next((r.data.emotion_column for r in recipes.values() if r is not None), eval_cfg.real.emotion_column)
    present = set(emotion_labels(load_training_dataset(plan.dataset), column))
    return [e for e in EMOTIONS if e in present]


def run_row(row: Row, recipe, dataset: str, plan: Plan, eval_cfg, generation, emotions: Sequence[str], sd_base: str,
            progress: Progress | None) -> dict:
    """One row: train (or reuse / resume), generate (keeping images), evaluate (keeping a finished result)."""
    folder = plan.out / "rows" / row.key
    results = folder / "eval" / "results.json"
    if _finished(results, eval_cfg):
        return {**json.loads(results.read_text()), "times": _times(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    run = None
    if recipe is not None:
        run = plan.runs / row.key
        with _timed(folder, "train"):
            train_row(row, recipe, dataset, run, _task(progress, f"{row.key} · train"))
    from emotrain.eval.generate import generate_images

    with _timed(folder, "generate"):
        images, record = generate_images(folder, emotions, generation, model=run,
                                         baseline_model=sd_base if run is None else None, progress=_prefixed(progress, row.key))
    with _timed(folder, "evaluate"):
        out = _evaluate({row.label: next(iter(images.values()))}, folder / "eval", eval_cfg,
                        _prefixed(progress, row.key), record)
    return {**out, "times": _times(folder)}


def train_row(row: Row, recipe, dataset: str, run: Path, progress) -> None:
    """Train into `run`, resume from its last checkpoint, or reuse it when finished with the same recipe."""
    from emocurate.core.config import to_dict
    from emotrain import checkpoint

    config = run / "config.json"
    if config.is_file():
        trained = json.loads(config.read_text())["recipe"]
        if trained != json.loads(json.dumps(to_dict(recipe))):
            raise ValueError(f"{run} was trained with another recipe than row {row.key} asks for now: use another "
                             "--runs folder, or delete it to retrain")
        return
    resume = "latest" if checkpoint.checkpoints(run / "checkpoints") else None
    if row.kind == "baseline":
        from emotrain.baselines.train import fit_baseline

        fit_baseline(recipe, dataset, run, resume=resume, progress=progress)
    else:
        from emotrain.train import train

        train(recipe, dataset, run, resume=resume, progress=progress)


def evaluate_images(name: str, images: Path, folder: Path, eval_cfg, progress) -> dict:
    results = folder / "eval" / "results.json"
    if _finished(results, eval_cfg):
        return json.loads(results.read_text())
    return _evaluate({name: images}, folder / "eval", eval_cfg, _prefixed(progress, name), None)


def _evaluate(models: dict, out: Path, eval_cfg, progress, record) -> dict:
    from emotrain.eval.evaluate import evaluate

    return evaluate(eval_cfg, models, out, progress=progress, generation=record)


def _finished(results: Path, eval_cfg) -> bool:
    """A results.json with every selected metric (evaluate writes it after each metric)."""
    if not results.is_file():
        return False
    return set(eval_cfg.metrics) <= set(json.loads(results.read_text()).get("metrics_done", []))


def _task(progress: Progress | None, label: str):
    """Training's progress(step, total, info) as a bar of the shared view."""
    if progress is None:
        return None
    seen = [None]

    def update(step: int, total: int, info: dict) -> None:
        if seen[0] is None:
            progress(label, step - 1, total)  # a resumed run starts at its checkpoint
            seen[0] = step - 1
        progress(label, step - seen[0])
        seen[0] = step

    return update


def _prefixed(progress: Progress | None, key: str):
    if progress is None:
        return None
    return lambda task, advance=0, total=None: progress(task if task.startswith(key) else f"{key} · {task}", advance, total)


class _timed:
    """Adds the seconds a step took to OUT/rows/<row>/times.json (summed over resumes)."""

    def __init__(self, folder: Path, step: str):
        self.path, self.step = folder / "times.json", step

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        times = _times(self.path.parent)
        times[self.step] = times.get(self.step, 0.0) + time.perf_counter() - self.start
        tmp = self.path.with_name("times.json.tmp")
        tmp.write_text(json.dumps(times, indent=2) + "\n")
        tmp.replace(self.path)


def _times(folder: Path) -> dict:
    path = folder / "times.json"
    return json.loads(path.read_text()) if path.is_file() else {}
