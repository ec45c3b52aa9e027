"""Progress of a long command in stages (load, notebooks, pages, mkdocs, ...).

Three modes, chosen once: `rich` (a progress bar with the running stage and its elapsed time, when
the output is a terminal and colour is allowed), `plain` (one line per finished stage, for logs,
pipes and NO_COLOR) and `quiet` (nothing). A stage that shows its own progress (the notebook runs)
is run inside `pause()`, which takes the bar off the screen meanwhile: rich allows one live display.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import TextIO


def progress_mode(quiet: bool = False, stream: TextIO | None = None) -> str:
    """quiet, rich (a terminal, colour allowed, not TERM=dumb) or plain."""
    stream = stream if stream is not None else sys.stdout
    if quiet:
        return "quiet"
    tty = getattr(stream, "isatty", lambda: False)()
    plain = os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or os.environ.get("ATLAS_PLAIN_PROGRESS")
    return "rich" if tty and not plain else "plain"


class Stages:
    """`stage(name)` ends the running stage and starts the next; `finish()` ends the last one."""

    def __init__(self, command: str, names: list[str], quiet: bool = False, stream: TextIO | None = None):
        self.command = command
        self.names = names
        self.stream = stream if stream is not None else sys.stdout
        self.mode = progress_mode(quiet, self.stream)
        self.current: str | None = None
        self.started = 0.0
        self.times: dict[str, float] = {}
        self._bar = None
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream)
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn(f"[bold]{command}[/]"),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=console,
            )
            self._task = self._bar.add_task("", total=len(names))
            self._bar.start()

    def stage(self, name: str) -> None:
        self._end()
        self.current, self.started = name, time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, description=name)

    def _end(self) -> None:
        if self.current is None:
            return
        seconds = time.perf_counter() - self.started
        self.times[self.current] = seconds
        if self.mode == "plain":
            print(f"{self.command}: {self.current} done in {seconds:.1f} s", file=self.stream, flush=True)
        elif self._bar is not None:
            self._bar.console.print(f"{self.command}: {self.current} done in {seconds:.1f} s", highlight=False)
            self._bar.update(self._task, advance=1)
        self.current = None

    @contextmanager
    def pause(self):
        """Take the bar off the screen while the body shows its own progress."""
        if self._bar is None:
            yield
            return
        self._bar.stop()
        try:
            yield
        finally:
            self._bar.start()

    def finish(self) -> None:
        self._end()
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
