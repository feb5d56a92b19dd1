"""Before any work: is everything a curation recipe needs there? Local inputs, the classifier probe and, offline, the
Hub cache. One error naming every missing thing, instead of a traceback an hour into a run. It loads no model.
"""

from __future__ import annotations

from pathlib import Path

from emocurate.core.hub import in_cache, looks_like_repo_id, offline
from emocurate.recipe import CurateRecipe
from emocurate.sources import parse_spec
from emocurate.store.manifest import n_ingest_shards


class NotReady(ValueError):
    """Something the recipe needs is missing; the message names all of it on one line."""


def hub_models(recipe: CurateRecipe) -> list[str]:
    """The models the recipe's stages load with `from_pretrained` (Hub ids or folders), in stage order, without repeats."""
    models = [recipe.classify.model]
    if recipe.caption.backend in ("transformers", "vllm"):
        models.append(recipe.caption.model)
    if recipe.clip_filter.backend == "transformers":
        models.append(recipe.clip_filter.model)
    return list(dict.fromkeys(models))


def check_ready(recipe: CurateRecipe, run_dir: Path) -> None:
    """Raise NotReady naming every missing input, probe and (when HF_HUB_OFFLINE is set) uncached Hub dataset or model."""
    local: list[str] = []
    uncached: list[str] = []
    is_offline = offline()
    ingested = n_ingest_shards(run_dir) is not None if Path(run_dir).is_dir() else False
    for spec in recipe.sources:
        parsed = parse_spec(spec)
        if parsed.kind in ("folder", "emoset", "urls") and not Path(parsed.target).expanduser().exists():
            what = "a file" if parsed.kind == "urls" else "a directory"
            local.append(f"source {spec}: {parsed.target} is not {what} (nothing is there)")
        elif parsed.kind == "hf" and is_offline and not ingested and looks_like_repo_id(parsed.target) \
                and not in_cache(parsed.target, "dataset"):
            uncached.append(f"dataset {parsed.target}")
    probe = recipe.classify.probe
    if recipe.classify.backend == "clip-probe" and probe and not Path(probe).expanduser().exists():
        local.append(f"classify.probe {probe} does not exist (make it with `emocurate train-classifier --dataset "
                     f"emoset:/data/EmoSet-118K --out {probe}`, or set classify.probe=PATH)")
    if is_offline:
        uncached += [f"model {m}" for m in hub_models(recipe) if looks_like_repo_id(m) and not in_cache(m, "model")]
    problems = []
    if uncached:
        problems.append(f"offline (HF_HUB_OFFLINE=1) and not in the Hugging Face cache: {', '.join(uncached)} "
                        "(run once online to download them, or unset HF_HUB_OFFLINE)")
    problems += local
    if problems:
        raise NotReady("cannot start: " + "; ".join(problems))
