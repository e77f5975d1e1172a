"""`alseg import-labels`: take an annotator's label volumes back into the dataset store."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import emit, err_console, handle_errors


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr) the labels belong to (updated in place)."),
    files: List[Path] = typer.Argument(..., help="Label volumes named <volume>.nii.gz (as `alseg export` "
                                       "names the templates); NIfTI, NRRD, MHA."),
    selection: Optional[Path] = typer.Option(None, "--selection", "-s", help="The selection the annotator "
                                             "worked on: its new slices count as annotated as drawn."),
    out: Path = typer.Option(..., "-o", "--out", help="The new labelled-set manifest (a selection manifest "
                             "for `select --labeled` and `train-seg --labels`)."),
    kind: str = typer.Option("masks", "--kind", help="masks (full masks) or scribbles."),
    ignore: Optional[int] = typer.Option(None, "--ignore", help="Label value of voxels left unannotated "
                                         "(nnU-Net's 'ignore'); for scribbles the store's unannotated value."),
    annotator: Optional[str] = typer.Option(None, "--annotator", help="Recorded with each file's provenance."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
):
    """Import label volumes painted on exported slices. Each file's geometry must match its
    image (a mirrored or re-oriented file is refused; a crop of the image grid, as 3D Slicer
    saves segmentations, is pasted back); values must be declared classes. The store is
    replaced only when the import is complete. Requested slices that did not arrive are
    listed, and stay unlabelled.
    """
    from ..api import import_labels

    m = import_labels(dataset, files, selection=selection, out=out, kind=kind, ignore=ignore,
                      annotator=annotator, force=force)
    info = m["imported"]
    missing = info["requested_missing"]
    err_console.print(f"import-labels: {info['requested_arrived']} requested slices arrived, "
                      f"{len(info['unrequested_accepted'])} unrequested accepted"
                      + (f"; {len(missing)} requested did not arrive (e.g. {missing[0]})" if missing else "")
                      + f"; {len(m['labeled'])} labelled now", highlight=False)
    emit(m)
