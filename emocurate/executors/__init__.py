"""Executors: where the shards of ingest and the model stages are computed (this process, one process per local
device, or a Ray cluster). All follow executors/protocol.py; none decides what to run or writes a file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

EXECUTORS = ("local", "ray")


def check_options(kind: str, ray_address: Optional[str] = None, ray_allow_network: bool = False) -> None:
    """Raise ValueError for an unknown executor or Ray options without `ray` (before any work)."""
    if kind not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}; got {kind!r}")
    if kind != "ray" and (ray_address or ray_allow_network):
        raise ValueError("--ray-address and --ray-allow-network need --executor ray")


def open_executor(kind: str, recipe, run_dir: Path, ray_address: Optional[str] = None, ray_allow_network: bool = False,
                  ray_num_cpus: Optional[int] = None):
    """The executor for `kind`: local (in process, or one worker per device when the recipe's `devices` lists several)
    or ray. A device this machine lacks fails here, before any work."""
    check_options(kind, ray_address, ray_allow_network)
    if kind == "ray":
        from emocurate.executors.ray import RayExecutor

        return RayExecutor(recipe, run_dir, ray_address, ray_allow_network, ray_num_cpus)
    from emocurate.executors.devices import Devices, resolve_devices
    from emocurate.executors.local import InProcess

    devices = resolve_devices(recipe.devices)
    if len(devices) > 1:
        return Devices(recipe, run_dir, devices)
    return InProcess(recipe, run_dir, devices[0] if devices else None)
