"""`folder:PATH`: every file under PATH (recursive, sorted); a first-level directory named after an emotion is its label.

It reads bytes only. Non-image files are yielded too, so they are recorded as dropped by ingest rather than vanishing;
so are symlinks it does not follow (outside the folder, loops, broken) and special files. Hidden files and directories
(names starting with '.') are not inputs and are skipped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from emocurate.core.emotions import POLARITY
from emocurate.sources.item import SourceItem


@dataclass(frozen=True)
class Entry:
    rel: str
    """POSIX path relative to the source folder, through symlinks as listed: the item's source_id."""
    real: str | None
    """The file to read (symlinks resolved), or None when it is not read."""
    error: str | None = None
    """Why it is not read, e.g. 'symlink_outside_root: ...'."""


def list_files(root: Path, follow_symlinks: bool = False) -> list[Entry]:
    """Every non-hidden file under root, sorted by relative path (the source order).

    Symlinks to files or directories inside root are followed; those leading outside root are entries with an error
    unless `follow_symlinks`. A directory link back into its own ancestors (a loop) is never followed."""
    root_real = os.path.realpath(root)
    out: list[Entry] = []

    def visit(folder: str, rel: str, ancestors: frozenset[str]) -> None:
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except OSError as err:
            out.append(Entry(rel or ".", None, f"read_error: cannot list {rel or '.'}: {err.strerror or err}"))
            return
        for name in names:
            path, child = os.path.join(folder, name), f"{rel}/{name}" if rel else name
            real = os.path.realpath(path)
            try:
                mode = os.stat(path).st_mode  # follows links
            except OSError as err:
                if os.path.islink(path):
                    why = f"broken_symlink: {child} points to {os.readlink(path)!r}, which does not exist"
                else:
                    why = f"read_error: {err.strerror or err}"
                out.append(Entry(child, None, why))
                continue
            if os.path.islink(path) and not follow_symlinks and os.path.commonpath([real, root_real]) != root_real:
                out.append(Entry(child, None, f"symlink_outside_root: {child} points to {real}, outside the source "
                                              "folder; set follow_symlinks: true to read it"))  # fmt: skip
            elif stat.S_ISDIR(mode) and real in ancestors:
                out.append(Entry(child, None, f"symlink_loop: {child} points back to {real}, a folder it is inside"))
            elif stat.S_ISDIR(mode):
                visit(path, child, ancestors | {real})
            elif stat.S_ISREG(mode):
                out.append(Entry(child, real))
            else:
                out.append(Entry(child, None, f"not_a_file: {child} is a fifo, socket or device; not read"))

    visit(str(root), "", frozenset({root_real}))
    return sorted(out, key=lambda e: e.rel)


def label_of(rel_path: str) -> str | None:
    """The emotion named by the first directory level, if any (case-insensitive)."""
    parts = rel_path.split("/")
    if len(parts) < 2:
        return None
    name = parts[0].lower()
    return name if name in POLARITY else None


def read_file(real: str) -> bytes:
    """The bytes of an already resolved path; refuses a symlink swapped in since listing (O_NOFOLLOW)."""
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def iter_folder(path: str, spec: str, follow_symlinks: bool = False) -> Iterator[SourceItem]:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"source {spec!r}: {root} is not a directory")
    for entry in list_files(root, follow_symlinks):
        if entry.real is None:
            yield SourceItem(spec, entry.rel, None, label_of(entry.rel), error=entry.error)
            continue
        try:
            data = read_file(entry.real)
        except OSError as err:
            yield SourceItem(spec, entry.rel, None, label_of(entry.rel), error=f"read_error: {err.strerror or err}")
            continue
        yield SourceItem(spec, entry.rel, data, label_of(entry.rel))
