"""`alseg propagate`: k-NN label propagation around the labelled slices (Belharbi et al.)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, err_console, handle_errors


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr)."),
    labeled: str = typer.Option(..., "--labeled", "-l", help="Selection manifest of the labelled slices."),
    model: Path = typer.Option(..., "--model", help="MODEL_DIR whose predictions become the pseudo-masks "
                               "(the last round's model)."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory for pseudo.zarr and pseudo.json."),
    k: int = typer.Option(10, "-k", help="An unlabelled slice is pseudo-labelled when a labelled slice is among "
                          "its k nearest neighbours (the paper: 40 on 67 images)."),
    metric: str = typer.Option("hist-jsd", "--metric", help="hist-jsd (the paper's: Jensen-Shannon distance of "
                               "intensity histograms) or embedding (L2 in --embeddings)."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", "-e", help="Embeddings store for --metric embedding."),
    group_by: str = typer.Option("none", "--group-by", help="Rank neighbours within: none, volume, or partition "
                                 "(Peng's slice-position thirds; the paper ranks within an image class)."),
    bins: int = typer.Option(256, "--bins", help="Histogram bins for hist-jsd."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="The last round's pseudo.json (records "
                                            "the round each slice joined)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (for the pseudo-masks)."),
):
    """Pseudo-label the unlabelled training slices that have a labelled slice among their k
    nearest neighbours, with the given model's predictions. Train on them with `train-seg
    --pseudo OUT`; keep them out of the next pick with `select --protect OUT/pseudo.json`.
    The count and the pseudo-masks' Dice against the store's masks (where it has them) go in
    pseudo.json (printed on stdout).
    """
    from ..api import propagate

    round_index = 0
    if previous is not None:
        import json
        round_index = int(json.loads(Path(previous).read_text()).get("args", {}).get("round", -1)) + 1
    manifest = propagate(dataset, labeled, model, out, k=k, metric=metric, embeddings=embeddings,
                         group_by=group_by, bins=bins, previous=previous, round_index=round_index, device=device)
    dice = manifest["pseudo_dice"]
    err_console.print(f"propagate: {manifest['count']} of {manifest['pool']} unlabelled slices pseudo-labelled"
                      + (f", pseudo-mask Dice {dice:.3f}" if dice is not None else ""), highlight=False)
    emit(manifest)
