"""`alseg stats`: how diverse the slices of a dataset store are, overall and within groups."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit, err_console, handle_errors


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr)."),
    split: str = typer.Option("train", "--split", help="Split whose slices are compared."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the manifest to this JSON file."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
):
    """Mean pairwise absolute deviation of the normalised slice pixels (paper section 3.2.1):
    over the whole split, and averaged over patient, volume and adjacent-slice groups (the
    consecutive slice pairs of each volume; each group weighs the same). Lower = more alike.
    The paper reports 0.217 / 0.159 / 0.166 / 0.115 on ACDC's training slices.
    """
    from ..api import stats

    manifest = stats(dataset, split=split, out=out, force=force)
    table = Table(title=f"slice diversity, {split} split of {dataset}")
    for col in ("group", "mean pairwise |x_i - x_j|", "groups", "slices"):
        table.add_column(col)
    for name, row in manifest["diversity"].items():
        dev = "-" if row["deviation"] is None else f"{row['deviation']:.3f}"
        table.add_row(name, dev, str(row["groups"]), str(row["slices"]))
    err_console.print(table)
    emit(manifest)
