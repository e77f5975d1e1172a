"""`alseg evaluate`: a thin layer over alseg_cli.segmentation.evaluate.evaluate."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit, err_console, handle_errors, progress_mode


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr) with native masks."),
    model: Path = typer.Option(..., "--model", "-m", help="MODEL_DIR made by 'alseg train-seg' (best member)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="EVAL.json (kind 'evaluation')."),
    predictions: Optional[Path] = typer.Option(None, "--predictions",
                                               help="Folder for each volume's native-size prediction (NIfTI)."),
    no_hd95: bool = typer.Option(False, "--no-hd95", help="Skip HD95 (faster)."),
    device: str = typer.Option("auto", "--device"),
    batch_size: int = typer.Option(16, "--batch-size"),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
):
    """3D Dice and HD95 per volume and class at native resolution.

    Dice: 1 when a class is absent from both prediction and mask, 0 when absent from one.
    HD95: the paper's (medpy's) pooled 95th percentile of both surfaces' distances as
    `hd95`, and the larger directed 95th percentile (MONAI's) as `hd95_max`; in mm with the
    volume's spacing when known, else in pixels; NaN (left out of the means, counted in
    hd95_valid) when the class is absent from either. Reported per volume,
    per class and as the mean over classes of the mean over volumes.
    """
    from ..api import evaluate

    manifest = evaluate(dataset, model, out, split=split, predictions=predictions, device=device,
                        batch_size=batch_size, force=force, hd95=not no_hd95,
                        progress=progress_mode())
    table = Table(title=f"{manifest['split']}: {manifest['num_volumes']} volumes", show_lines=False)
    table.add_column("class")
    table.add_column("Dice", justify="right")
    table.add_column(f"HD95 ({manifest['hd95_unit']})", justify="right")
    table.add_column("HD95 max", justify="right")

    def fmt(v):
        return "-" if v is None or math.isnan(v) else f"{v:.2f}"

    for name, row in manifest["per_class"].items():
        label = f"{name} (absent, not in mean)" if row.get("absent") else name
        table.add_row(label, f"{row['dice']:.4f}", fmt(row["hd95"]), fmt(row["hd95_max"]))
    table.add_row("mean", f"{manifest['mean_dice']:.4f}", fmt(manifest["mean_hd95"]),
                  fmt(manifest["mean_hd95_max"]), style="bold")
    err_console.print(table)
    if manifest["absent_classes"]:
        err_console.print(f"[yellow]alseg: warning:[/] class(es) {', '.join(manifest['absent_classes'])} appear in "
                          f"no reference mask of split {manifest['split']!s}; left out of the means",
                          highlight=False, soft_wrap=True)
    emit(manifest)
