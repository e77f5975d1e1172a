"""Progress reporting: library functions report, only the CLI draws.

A long step reports through a ``Reporter``: ``start(task, total)`` and ``update(task, done,
text)`` for a bar, ``finish(task)``, ``note(message)`` for a milestone (an epoch, a
validation, a finished round) and ``status(...)`` for a summary table that a live display
redraws. The base class reports nothing; ``LineReporter`` prints one timestamped line per
milestone (stderr a file or a pipe); the CLI's terminal reporter draws Rich bars.
Library entry points take ``progress``: a Reporter, or a bool (True: plain lines).
"""
from __future__ import annotations

import sys
import time
from typing import Optional, Sequence


def log_line(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class Reporter:
    """Reports nothing; subclasses draw. ``live``: the display redraws in place (a terminal)."""

    live = False

    def start(self, task: str, total: Optional[int], done: int = 0) -> None:
        pass

    def update(self, task: str, done: int, text: str = "", total: Optional[int] = None) -> None:
        pass

    def finish(self, task: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def status(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> None:
        pass

    def close(self) -> None:
        """The reporting is over (a live display stops redrawing)."""


class LineReporter(Reporter):
    """One timestamped stderr line per milestone; bars and live tables are left out."""

    def note(self, message: str) -> None:
        log_line(message)


def as_reporter(progress) -> Reporter:
    """A Reporter as is; True -> plain lines; False / None -> silence."""
    if isinstance(progress, Reporter):
        return progress
    return LineReporter() if progress else Reporter()
