"""Shared CLI plumbing: error reporting, stdin manifests, stdout manifests, consoles.

stdout carries data (one JSON manifest per command); people read stderr.
"""
from __future__ import annotations

import functools
import json
import sys
import traceback
from typing import Optional

import typer
from rich.console import Console

from ..atomic import dumps
from ..errors import AlsegError, AnnotationNeeded
from ..progress import LineReporter, Reporter

err_console = Console(stderr=True)
STATE = {"debug": False}


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit non-zero."""
    err_console.print(f"[bold red]alseg: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn library errors into one clear stderr line (a traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except AnnotationNeeded as exc:      # a pause, not a failure: say what to do next
            err_console.print(f"[bold yellow]alseg: waiting for annotation:[/] {exc}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(AnnotationNeeded.EXIT_CODE)
        except AlsegError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted; no partial output was kept", code=130)
        except Exception as exc:  # unexpected: still one line unless debugging
            if STATE["debug"]:
                traceback.print_exc()
            fail(f"{exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)")
    return wrapper


def emit(manifest: dict) -> None:
    """Print a manifest as one JSON line on stdout."""
    sys.stdout.write(dumps(manifest) + "\n")
    sys.stdout.flush()


def stdin_is_piped() -> bool:
    try:
        return not sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def read_stdin_manifest(required: bool = True) -> Optional[dict]:
    """Read one JSON manifest from stdin (the last JSON line if several are piped)."""
    text = sys.stdin.read()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        if required:
            raise AlsegError("expected a JSON manifest on stdin, got nothing")
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise AlsegError("stdin is not a JSON manifest (pipe the stdout of an alseg command)") from None


class RichReporter(Reporter):
    """Live Rich bars (one per task) and a redrawn status table on the terminal."""

    live = True

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("[bold]{task.fields[name]}[/]"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[text]}"), TimeRemainingColumn(), console=err_console)
        self.tasks = {}
        self.table = None

    def start(self, task, total, done=0):
        if not self.tasks:
            self.bars.start()
        self.tasks[task] = self.bars.add_task("", total=total, completed=done, name=task, text="")

    def update(self, task, done, text="", total=None):
        if task in self.tasks:
            self.bars.update(self.tasks[task], completed=done, text=text,
                             **({"total": total} if total is not None else {}))

    def finish(self, task):
        if self.tasks.pop(task, None) is not None and not self.tasks:
            self.bars.stop()              # finished bars stay on screen

    def note(self, message):
        err_console.print(message, highlight=False)

    def status(self, title, columns, rows, caption):
        """One live table (the loop's summary); the loop's steps draw no bars meanwhile."""
        from rich.live import Live
        from rich.table import Table

        table = Table(title=title, title_justify="left", caption=caption)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        if self.table is None:
            self.table = Live(table, console=err_console, refresh_per_second=1, transient=False)
            self.table.start()
        else:
            self.table.update(table)

    def close(self):
        if self.table is not None:
            self.table.stop()
            self.table = None


def progress_mode() -> Reporter:
    """Live bars on a terminal; plain milestone lines when stderr goes to a file or a pipe."""
    return RichReporter() if err_console.is_terminal else LineReporter()
