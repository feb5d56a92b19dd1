"""What the local Hugging Face cache holds, and whether the Hub may be asked: checks made before any work starts.

It downloads nothing and opens no connection; a cached snapshot folder counts as "there" (its files are not verified).
"""

from __future__ import annotations

import os
from pathlib import Path


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE) asks the libraries not to reach the Hub."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in flags)


def looks_like_repo_id(value: str) -> bool:
    """`user/name` (or a bare `name`) that is not an existing local path: what `from_pretrained` sends to the Hub."""
    if value.startswith(("tiny:", ".", "/", "~")) or Path(value).expanduser().exists():
        return False
    return value.count("/") <= 1 and bool(value.strip("/"))


def in_cache(repo_id: str, repo_type: str = "model") -> bool:
    """Whether a snapshot of the repo sits in the Hub cache (or, for a dataset, a prepared copy in the datasets cache)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    if folder.is_dir() and any(folder.iterdir()):
        return True
    if repo_type == "dataset":
        datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
        return (datasets_cache / repo_id.replace("/", "___")).is_dir()
    return False


def token_available() -> bool:
    """Whether huggingface_hub would send a token (HF_TOKEN or a saved login); the token itself is never returned."""
    from huggingface_hub import get_token

    return get_token() is not None


def hub_revision(model_id: str, revision: str | None, probe_file: str) -> str | None:
    """The commit a Hub model resolved to, read from the local cache (offline); None for local folders."""
    if Path(model_id).exists() or model_id.startswith("tiny:"):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, probe_file, revision=revision)
        if isinstance(cached, str) and "/snapshots/" in cached:
            return cached.split("/snapshots/")[1].split("/")[0]
    except Exception:  # noqa: BLE001 - best effort: the id and requested revision are recorded anyway
        return None
    return None
