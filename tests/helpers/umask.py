"""Run a block under a given umask and check that what it wrote has the modes that umask gives new files."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def wrong_modes(path: Path, mask: int) -> dict[str, str]:
    """{path: 'oMODE'} for every file or folder at or under `path` whose mode is not 0666 / 0777 minus `mask`."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    wrong = {}
    for p in paths:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if not p.is_symlink() and mode != (0o777 if p.is_dir() else 0o666) & ~mask:
            wrong[str(p)] = oct(mode)
    return wrong
