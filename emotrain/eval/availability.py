"""Before any generation or training starts: is every model id a local folder, a `tiny:` model, or a Hub model that is
in the local cache (or, when online, reachable)? One error names every missing one. It loads no model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

PIPELINE_FILE, MODEL_FILE = "model_index.json", "config.json"


def missing_reason(model_id: str, revision: str | None = None, probe: str = MODEL_FILE) -> str | None:
    """None when `model_id` can be loaded; otherwise why not (short)."""
    if model_id.startswith("tiny:"):
        return None
    if Path(model_id).expanduser().exists():
        return None
    if model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        return "no such folder, and not a Hub id (user/name)"
    from huggingface_hub import try_to_load_from_cache

    from emocurate.core.hub import offline

    if isinstance(try_to_load_from_cache(model_id, probe, revision=revision), str):
        return None
    if offline():
        return "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(model_id, probe, revision=revision, etag_timeout=10)
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, gated, bad revision: all mean "cannot load"
        return f"not in the local Hugging Face cache and the Hub did not serve it ({type(err).__name__})"
    return None


def check_models(models: Iterable[tuple[str, str, str | None, str]]) -> None:
    """`models`: (where it comes from, id, revision, probe file). Raise one FileNotFoundError naming every missing id."""
    problems = [f"{where} {model_id!r}: {reason}" for where, model_id, revision, probe in models
                if (reason := missing_reason(model_id, revision, probe))]
    if problems:
        raise FileNotFoundError("model(s) not available, nothing was generated: " + "; ".join(problems) +
                                ". Download them first (`huggingface-cli download ID`), pass local folders, or fix the ids")


def run_models(run: str | Path) -> list[tuple[str, str, str | None, str]]:
    """The base pipeline a trained run (CoEmoGen or a baseline) samples from, read from its config.json."""
    config_file = Path(run) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--model {run}: not a trained run (no config.json); train it with `emotrain fit` or "
                                "`emotrain baseline fit`")
    base = json.loads(config_file.read_text())["base_model"]
    return [(f"base model of {run}", base["id"], base.get("resolved_revision") or base.get("revision"), PIPELINE_FILE)]


def eval_models(cfg) -> list[tuple[str, str, str | None, str]]:
    """The Hub models the selected metrics load (weight files are checked by `evaluate.check_weights`)."""
    out = []
    if {"sem_d", "clip_score"} & set(cfg.metrics):
        out.append(("clip.model", cfg.clip.model, cfg.clip.revision, MODEL_FILE))
    if "emo_a" in cfg.metrics:
        out.append(("emo_a.model", cfg.emo_a.model, cfg.emo_a.revision, MODEL_FILE))
    if "sem_c" in cfg.metrics and not cfg.sem_c.imagenet.endswith((".pth", ".pt")):
        out.append(("sem_c.imagenet", cfg.sem_c.imagenet, cfg.sem_c.imagenet_revision, MODEL_FILE))
    return out
