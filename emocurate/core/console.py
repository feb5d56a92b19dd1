"""Terminal output shared by the `emocurate` and `emotrain` command lines: rich progress bars and quiet libraries.

The libraries never import this; they take a `progress(task, advance, total)` callable that these bars implement.
"""

from __future__ import annotations

from typing import Optional


class RichProgress:
    """`progress(task, advance, total)` as rich bars with count, rate and ETA; a context manager."""

    def __init__(self, unit: str = "", label_width: int = 10):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        per_second = f" {unit}/s" if unit else "/s"

        class Rate(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed:.1f}{per_second}" if task.speed else f"  -{per_second}", style="cyan")

        self.bars = Progress(TextColumn(f"{{task.description:>{label_width}}}"), BarColumn(), MofNCompleteColumn(), Rate(),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        self.tasks: dict[str, int] = {}

    def __call__(self, task: str, advance: int = 0, total: Optional[int] = None) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total)
        elif total is not None:
            self.bars.update(self.tasks[task], total=total)
        if advance:
            self.bars.advance(self.tasks[task], advance)

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bars.__exit__(*exc)


def quiet_libraries() -> None:
    """Our bars are the progress display: silence transformers/diffusers/datasets loading bars and deprecation chatter."""
    import warnings

    import datasets
    import diffusers
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
