"""Progress bars for long release commands (hashing, signing, zipping, verifying large binaries).

A bar is drawn only on an interactive terminal: never with ``--json``, never when stderr is
redirected or piped (CI logs, scripts), and ``rich`` is imported only then, so ordinary CLI
startup does not pay for it. The bar is transient: once the command finishes the terminal shows
exactly what it would have shown without it. Output goes to stderr so stdout stays parseable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ringward.operations.release.progress import Progress


def wants_progress(*, json_output: bool, stream: TextIO | None = None) -> bool:
    """True when a progress bar belongs on ``stream`` (default stderr)."""
    target = sys.stderr if stream is None else stream
    if json_output:
        return False
    try:
        return bool(target.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


@contextmanager
def byte_progress(*, json_output: bool, stream: TextIO | None = None) -> Iterator[Progress | None]:
    """Yield a ``progress(phase, bytes_done, bytes_total)`` callback drawing one bar per phase,
    or ``None`` (nothing drawn, nothing imported) when no bar belongs on the stream."""
    if not wants_progress(json_output=json_output, stream=stream):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bars

    console = Console(file=sys.stderr if stream is None else stream)
    with Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
              TimeRemainingColumn(), console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def report(phase: str, done: int, total: int) -> None:
            task = tasks.get(phase)
            if task is None:
                task = tasks[phase] = bars.add_task(phase, total=total)
            bars.update(task, completed=done, total=total)

        yield report
