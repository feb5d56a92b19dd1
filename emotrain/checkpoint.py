"""Training checkpoints: written into a temporary folder and renamed (a folder named checkpoint-N is complete), the last
K kept, `latest` found for resume. Holds HiLoRA, Mapper, Encoder, optimizer, grad scaler, RNG states per rank and the
step / data position. It does not decide when to checkpoint (train.py does).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

PREFIX = "checkpoint-"
logger = logging.getLogger(__name__)


def checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def find(folder: str | Path, which: str) -> Path:
    """`latest` -> the newest intact checkpoint in `folder` (a damaged newer one is named in a warning and skipped);
    otherwise a checkpoint folder path, which must be intact. Clear error when there is none."""
    if which == "latest":
        found = checkpoints(folder)
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {folder}")
        damaged = []
        for path in reversed(found):
            why = damage(path)
            if why is None:
                for bad, reason in damaged:
                    logger.warning("checkpoint %s is damaged (%s): resuming from %s instead", bad, reason, path.name)
                return path
            damaged.append((path, why))
        raise ValueError(f"--resume latest: every checkpoint under {folder} is damaged: "
                         + "; ".join(f"{p.name}: {why}" for p, why in damaged)
                         + ". Start a new run folder (or restore the checkpoints from a backup)")
    path = Path(which)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"--resume {which}: not a checkpoint folder (no state.json); use 'latest' or a path")
    why = damage(path)
    if why is not None:
        intact = [p for p in reversed(checkpoints(path.parent)) if p != path and damage(p) is None]
        hint = f"resume from {intact[0]} (the newest intact one) or 'latest'" if intact else "start a new run folder"
        raise ValueError(f"--resume {which}: checkpoint is damaged ({why}); {hint}")
    return path


def damage(path: Path) -> str | None:
    """Why checkpoint folder `path` cannot be resumed from (a missing, truncated or unreadable file), or None if intact.

    Reads every tensor file in full and checks the CRCs of the torch (zip) files without unpickling them."""
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        expected = ["optimizer.pt"] + [f"rng_{i}.pt" for i in range(int(state["num_processes"]))]
        int(state["step"]), int(state["position"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"state.json unreadable: {err}"
    missing = [name for name in expected if not (path / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    for file in sorted(path.glob("*.safetensors")):
        try:
            load_file(str(file))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for a truncated header or data
            return f"{file.name} unreadable ({type(err).__name__}: {err})"
    for file in sorted(path.glob("*.pt")):
        try:
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as err:
            return f"{file.name} truncated or unreadable ({err})"
        if bad is not None:
            return f"{file.name}: {bad} fails its checksum"
    return None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(accelerator, folder: Path, step: int, position: int, modules: dict, optimizer, keep: int,
         extra: dict | None = None) -> Path:
    """Write checkpoint-`step` atomically (every rank writes its RNG state) and keep the newest `keep` checkpoints.

    `extra` (JSON-able, e.g. the emotions) is stored in state.json for the resuming run to check."""
    from safetensors.torch import save_file

    final = folder / f"{PREFIX}{step}"
    tmp = folder / f".{PREFIX}{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        for name, state in modules.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if getattr(accelerator, "scaler", None) is not None:
            torch.save(accelerator.scaler.state_dict(), tmp / "scaler.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": step, "position": position, "num_processes": accelerator.num_processes, **(extra or {})}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")  # written last
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load(accelerator, path: Path) -> tuple[dict, dict]:
    """Read a checkpoint: (state.json, {name: tensors}); also restores this rank's RNG state and the grad scaler."""
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    if state["num_processes"] != accelerator.num_processes:
        raise ValueError(
            f"checkpoint {path} was written by {state['num_processes']} process(es); this run has "
            f"{accelerator.num_processes}: resume with the same number of processes"
        )
    tensors = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
    set_rng_state(torch.load(path / f"rng_{accelerator.process_index}.pt", weights_only=False))
    if (path / "scaler.pt").exists() and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=False))
    return state, tensors


def load_optimizer(optimizer, path: Path) -> None:
    state = torch.load(path / "optimizer.pt", weights_only=False, map_location="cpu")
    try:
        optimizer.load_state_dict(state)
    except ValueError as err:  # e.g. a checkpoint from before HiLoRA kept one parameter per adapter
        raise ValueError(f"checkpoint {path} holds optimizer state for other parameters than this model's ({err}); "
                         "checkpoints written by emotrain before one-parameter-per-adapter HiLoRA cannot resume: "
                         "start a new run folder") from None
