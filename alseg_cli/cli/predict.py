"""`alseg predict`: segment volume files that were never prepped."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .common import emit, err_console, handle_errors, progress_mode


@handle_errors
def command(
    model: Path = typer.Argument(..., help="MODEL_DIR from `alseg train-seg` (or a loop round's model/)."),
    inputs: List[Path] = typer.Argument(..., help="Volume files (NIfTI, MHA/MHD, NRRD) or DICOM folders."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for <name>.nii.gz / .mha labels, labels.txt, "
                             "manifest.json."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write the softmax per class "
                                       "(<name>_probabilities, one channel per class)."),
    overlays: int = typer.Option(0, "--overlays", min=0, help="Also <name>_overlay.png: this many slices "
                                 "with the most predicted foreground, labels over the image (0: none)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
):
    """Predict label volumes for scans that were never prepped: the model's training-store
    preprocessing (normalisation, slice axis, resampling and crop, working size) is applied,
    and each label file comes back at the input's native size with the input's own header
    (NIfTI qform and sform with their codes; ITK origin, spacing and direction). labels.txt
    names the classes in ITK-SNAP's label description format.
    """
    from ..api import predict

    manifest = predict(model, inputs, out, device=device, probabilities=probabilities, overlays=overlays,
                       force=force, progress=progress_mode())
    err_console.print(f"predict: {len(manifest['volumes'])} volume(s) -> {out}", highlight=False)
    emit(manifest)
