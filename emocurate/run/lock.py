"""One build or refilter at a time per run folder: an exclusive `flock` on RUN/.emocurate.lock.

The operating system releases the lock when its holder exits or is killed, so a lock left by a dead process is taken
over at once; the file only records who holds it, for the message a second build prints. POSIX only.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from emocurate.core.config import ConfigError

LOCK = ".emocurate.lock"


class RunLocked(ConfigError):
    """Another process is building or refiltering this run folder."""


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold RUN's lock for the duration; raises RunLocked (naming the holder) when another live process holds it."""
    path = Path(run_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(path)
        os.close(fd)
        raise RunLocked(f"{run_dir} is in use by another emocurate process ({holder}): wait for it to finish, or stop "
                        "it and run this command again (a lock left by a process that died is taken over)") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:2]),
                                 "since": datetime.datetime.now().isoformat(timespec="seconds")}).encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}` since {info.get('since')}"
