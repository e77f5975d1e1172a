"""`alseg prep` (not built yet)."""
from __future__ import annotations

import typer

from .common import not_available


def command(ctx: typer.Context = None):
    not_available("prep")
