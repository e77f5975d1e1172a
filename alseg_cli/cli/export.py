"""`alseg export`: hand a selection's slices to an annotator."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, err_console, handle_errors


@handle_errors
def command(
    selection: Path = typer.Argument(..., help="Selection manifest from `alseg select` (or a loop round's selection.json)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for tasks.csv, tasks.json, slices/*.png, "
                             "montage.png, labels/<volume>.nii.gz templates and manifest.json."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset store (default: the one the "
                                           "selection names)."),
    all_labelled: bool = typer.Option(False, "--all", help="Every slice of the labelled set, not only the new ones."),
    label_studio_url: Optional[str] = typer.Option(
        None, "--label-studio-url",
        help="Prefix of each image URL in label_studio.json (default /data/local-files/?d=images/: OUT is "
             "Label Studio's LOCAL_FILES_DOCUMENT_ROOT)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
):
    """Write the slices a selection picked as annotation tasks: for each, the source file, the
    slice's axis and index in it (0- and 1-based), the file's orientation and the slice's
    world position; a PNG per slice, a montage, and an empty label volume per volume in its
    image's geometry (labels/<volume>.nii.gz) to paint the listed slices in, e.g. in ITK-SNAP
    or 3D Slicer, and save under the same name. For 2D tools: native-size PNGs in images/ with
    CVAT's labelmap.txt, and Label Studio's tasks (label_studio.json) and labelling config
    (label_studio.xml).
    """
    from ..api import export

    manifest = export(selection, out, dataset=dataset, all_labelled=all_labelled, force=force,
                      label_studio_url=label_studio_url)
    err_console.print(f"export: {manifest['slices']} slices of {manifest['volumes']} volume(s) -> {out} "
                      f"(tasks.csv; paint them in {out}/labels/<volume>.nii.gz)", highlight=False)
    emit(manifest)
