"""Terminal output shared by the `emocurate` and `emotrain` command lines: rich progress bars, quiet libraries, and the
one place that turns an exception into one `error:` line and an exit code (2: fix the command; 1: the machine refused).

The libraries never import this; they take a `progress(task, advance, total)` callable that these bars implement.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Optional

DEBUG_ENV = "EMOCURATE_DEBUG"
USER_ERROR, ENVIRONMENT_ERROR = 2, 1


class RichProgress:
    """`progress(task, advance, total)` as rich bars with count, rate and ETA; a context manager."""

    def __init__(self, unit: str = "", label_width: int = 10):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        per_second = f" {unit}/s" if unit else "/s"

        class Rate(ProgressColumn):
            def render(self, task):
                if task.speed:
                    return Text(f"{task.speed:.1f}{per_second}", style="cyan")
                return Text("done" if task.finished else f"  -{per_second}", style="green" if task.finished else "cyan")

        self.bars = Progress(TextColumn(f"{{task.description:>{label_width}}}"), BarColumn(), MofNCompleteColumn(), Rate(),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        self.tasks: dict[str, int] = {}
        self.entered = False

    def __call__(self, task: str, advance: int = 0, total: Optional[int] = None) -> None:
        if not self.tasks and self.entered:  # the first report: inputs were checked, work starts
            self.bars.start()
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total)
        # one update: it also marks a task done when completed >= total, so a resumed stage with nothing left
        # (total 0) shows done instead of a running clock and an unknown ETA
        self.bars.update(self.tasks[task], total=total, advance=advance or None)

    def __enter__(self):
        self.entered = True  # the bars appear at the first report, not before (an input error prints no empty bar)
        return self

    def __exit__(self, *exc):
        if self.tasks:
            self.bars.stop()
        return False


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


def print_error(message: str) -> None:
    """One red `error: ...` line on stderr (newlines in the message are folded into the line)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False)


def one_line(message: str) -> str:
    """A multi-line message (e.g. a list of dataset problems) as one line: "head: item; item"."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return "".join(line if i == 0 else (" " if lines[i - 1].endswith(":") else "; ") + line for i, line in enumerate(lines))


def debugging() -> bool:
    """--debug or EMOCURATE_DEBUG=1: let tracebacks through."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception that reached the command line."""
    if _is_network(err):
        endpoint = f" ({os.environ['HF_ENDPOINT']})" if os.environ.get("HF_ENDPOINT") else ""
        return ENVIRONMENT_ERROR, (f"cannot connect: {err or type(err).__name__}; check the network and the endpoint "
                                   f"address{endpoint}")
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return USER_ERROR, (f"{err.filename} is a file where a folder is needed: give a folder path (or remove the file)"
                            if err.filename else str(err))
    if isinstance(err, (FileNotFoundError, IsADirectoryError)):
        return USER_ERROR, _os_message(err)
    if isinstance(err, PermissionError) or getattr(err, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ENVIRONMENT_ERROR, _os_message(err) + ": choose a location you can write to (e.g. another --out)"
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return ENVIRONMENT_ERROR, _os_message(err) + ": free some space or write somewhere else"
    if isinstance(err, ValueError):  # bad input: configs, recipes, datasets, options (ConfigError, DatasetError, ...)
        return USER_ERROR, str(err)
    if isinstance(err, ImportError):  # an optional extra that is not installed
        return ENVIRONMENT_ERROR, f"{err}: install the package (the README lists the extras, e.g. pip install -e '.[ray]')"
    if isinstance(err, (OSError, RuntimeError, MemoryError)):  # files, the Hub, CUDA out of memory
        return ENVIRONMENT_ERROR, str(err) or type(err).__name__
    return ENVIRONMENT_ERROR, (f"unexpected {type(err).__name__}: {err} (a bug: rerun with --debug or {DEBUG_ENV}=1 for the "
                               "traceback and report it)")


def _os_message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    return str(err)


def _is_network(err: BaseException) -> bool:
    """A connection that could not be made (requests, httpx, urllib, sockets), whichever HTTP client raised it."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    names = {(c.__module__.split(".")[0], c.__name__) for c in type(err).__mro__}
    return any(re.match(r"httpx|httpcore|requests|urllib3|aiohttp", module) and
               name in ("TransportError", "ConnectionError", "ConnectError", "Timeout", "TimeoutException", "NetworkError",
                        "ProxyError", "ClientConnectionError", "NewConnectionError", "MaxRetryError")
               for module, name in names)


def error_lines_group():
    """A typer group class (`typer.Typer(cls=error_lines_group())`) that turns any exception from a command into one
    `error:` line and exit code 2 or 1; `--debug` / EMOCURATE_DEBUG=1 lets the traceback through instead."""
    import click
    import typer
    from typer.core import TyperGroup

    class ErrorLines(TyperGroup):
        def invoke(self, ctx):
            try:
                return super().invoke(ctx)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as err:  # noqa: BLE001 - the one place the command lines map errors
                if debugging():
                    raise
                code, message = describe(err)
                print_error(message)
                raise typer.Exit(code) from None

    return ErrorLines


def debug_option(debug: bool) -> None:
    """The `--debug` flag of both command lines (a typer callback): tracebacks instead of error lines."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def check_out_folder(path, option: str = "--out") -> None:
    """Refuse an output folder path that is (or lies under) a file, before any work; creates nothing."""
    from pathlib import Path

    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f" ({part} is a file)"
                raise NotADirectoryError(f"{option} {path} is not a folder{where}: give a folder path")
            return
