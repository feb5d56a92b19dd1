"""Give files written by libraries that create them owner-only (safetensors writes 0600, tempfile.mkdtemp 0700) the mode
the user's umask gives any new file, as other tools' outputs have. It does not write files itself."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (changing it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Set `path` (a file, or a folder and everything under it) to 0666 (0777 for folders and executables) minus the
    umask: the mode `open()` and `mkdir()` would have given it. Symlinks are left alone."""
    mask = current_umask()
    path = Path(path)
    todo = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for p in todo:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        full = 0o777 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o666
        if stat.S_IMODE(st.st_mode) != full & ~mask:
            os.chmod(p, full & ~mask)
