"""The progress callback the library accepts: `progress(task, advance, total)`; the CLI passes a rich one.

The library never imports rich; `None` means no progress reporting.
"""

from __future__ import annotations

from typing import Optional, Protocol


class Progress(Protocol):
    def __call__(self, task: str, advance: int = 0, total: Optional[int] = None) -> None:
        """Advance `task` by `advance` items; `total` (when given) sets or updates its expected size."""


def no_progress(task: str, advance: int = 0, total: Optional[int] = None) -> None:
    return None
