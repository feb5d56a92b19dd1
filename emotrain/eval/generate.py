"""Images for `emotrain eval --model RUN` / `--baseline sd`: generate n per emotion into `OUT/images/<name>/<emotion>/`.

Every row uses the same sampler (scheduler, steps, guidance: `GenerateSettings`), recorded per model, so Table-1 rows
differ by method only. Both generators keep existing images, so an interrupted eval resumes. Metrics are not computed
here (see `evaluate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

BASELINE_NAME = "sd-baseline"


@dataclass
class GenerateSettings:
    n: int = 1000
    """Images per emotion (the paper: 1,000)."""
    seed: int = 0
    steps: int = 30
    guidance: float = 7.5
    batch_size: int = 4
    device: str | None = None
    scheduler: str = "dpm-solver++"
    """The scheduler of every generated row (emotrain.sampling.SCHEDULERS), ours and the SD baseline alike."""

    def __post_init__(self):
        from emotrain.sampling import check_scheduler

        check_scheduler(self.scheduler)
        for key in ("n", "steps", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1; got {value!r}")


def generate_images(out_dir: str | Path, emotions: Sequence[str], settings: GenerateSettings, model: str | Path | None = None,
                    baseline_model: str | None = None, baseline_revision: str | None = None,
                    progress: Callable[..., None] | None = None) -> tuple[dict[str, Path], dict]:
    """Generate with our trained run (`model`) and/or plain SD (`baseline_model`); return folders by name + settings."""
    from emotrain.sampling import make_scheduler, sampler_record

    out_dir = Path(out_dir)
    folders, record = {}, {"settings": asdict(settings), "emotions": list(emotions)}
    if model is not None:
        name = Path(model).name
        folders[name] = _ours(Path(model), out_dir / "images" / name, emotions, settings, progress)
        record[name] = {"generator": "emotrain.generate", "model": str(model),
                        "seeds": "emotrain.generate.index_seed(seed, i) for image i",
                        "sampler": sampler_record(settings.scheduler, settings.steps, settings.guidance)}
    if baseline_model is not None:
        from emotrain.eval.baseline import PROMPT, generate_baseline, load_pipeline

        pipe = load_pipeline(baseline_model, baseline_revision, settings.device)
        pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler.config)  # not the pipeline's default PNDM
        folder = out_dir / "images" / BASELINE_NAME
        advance = _bar(progress, f"generate {BASELINE_NAME}", settings.n * len(emotions))
        for emotion in emotions:
            generate_baseline(pipe, emotion, settings.n, settings.seed, folder / emotion, steps=settings.steps,
                              guidance=settings.guidance, batch_size=settings.batch_size, progress=advance)
        folders[BASELINE_NAME] = folder
        record[BASELINE_NAME] = {"generator": "diffusers StableDiffusionPipeline", "model": baseline_model,
                                 "revision": baseline_revision, "prompt": PROMPT, "safety_checker": "off",
                                 "seeds": "image i of every emotion uses seed + i",
                                 "sampler": sampler_record(settings.scheduler, settings.steps, settings.guidance, None)}
    return folders, record


def _ours(model: Path, folder: Path, emotions: Sequence[str], settings: GenerateSettings, progress) -> Path:
    try:
        from emotrain.generate import generate
    except ImportError as err:
        raise RuntimeError(f"--model needs emotrain.generate, which this build lacks ({err}); "
                           "generate the images yourself and pass --images") from None
    advance = _bar(progress, f"generate {model.name}", settings.n * len(emotions))
    for emotion in emotions:
        seen = [0]

        def on_batch(done: int, total: int) -> None:  # generate reports (done, total) per emotion; the bar spans all
            advance(done - seen[0])
            seen[0] = done

        generate(model, emotion, settings.n, settings.seed, folder / emotion, steps=settings.steps,
                 guidance=settings.guidance, batch_size=settings.batch_size, device=settings.device, progress=on_batch,
                 scheduler=settings.scheduler)
    return folder


def _bar(progress, label: str, total: int) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    progress(label, 0, total)
    return lambda n: progress(label, n)
