"""Publish a trained run folder to the Hugging Face Hub as a model repo. The token comes from the environment
(HF_TOKEN) or `huggingface-cli login`; it is never read, printed or written here.
"""

from __future__ import annotations

from pathlib import Path

REQUIRED = ("config.json", "hilora.safetensors", "mapper", "encoder", "emotion_clusters.safetensors", "README.md")


def push_run(run: str | Path, repo: str, private: bool = False, include_checkpoints: bool = False) -> str:
    """Create (or reuse) the model repo and upload the run folder; returns the repo URL."""
    from huggingface_hub import HfApi, get_token

    run = Path(run)
    missing = [name for name in REQUIRED if not (run / name).exists()]
    if missing:
        raise FileNotFoundError(f"{run} is not a finished emotrain run: missing {', '.join(missing)}")
    if repo.count("/") != 1:
        raise ValueError(f"--repo must look like user/name; got {repo!r}")
    if get_token() is None:
        raise ValueError("no Hugging Face token: run `hf auth login` or set HF_TOKEN in the environment")
    api = HfApi()
    url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    ignore = [".*", "**/.*"] + ([] if include_checkpoints else ["checkpoints/**"])
    api.upload_folder(folder_path=str(run), repo_id=repo, repo_type="model", ignore_patterns=ignore,
                      commit_message="Upload CoEmoGen emotion model (emotrain)")
    return str(url)
