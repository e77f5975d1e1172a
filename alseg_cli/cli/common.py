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
from ..errors import AlsegError

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


def progress_mode():
    """A live bar on a terminal; plain log lines when stderr goes to a file or a pipe."""
    return True if err_console.is_terminal else "log"
