"""`alseg prep`: volumes on disk (or the built-in phantoms) -> a dataset store."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit, err_console, handle_errors, progress_mode


@handle_errors
def command(
    source: Optional[str] = typer.Argument(
        None, help="Dataset folder or file (ACDC, MSD/nnU-Net, CHAOS Train_Sets/CT or /MR, MS-CMR "
                   "{train,val,TestSet}/{images,labels}, DAVIS, *.h5, a CSV table), or 'phantoms' for "
                   "built-in synthetic volumes."),
    out: Path = typer.Option(..., "-o", "--out", help="Output dataset store (OUT.zarr); the manifest "
                             "goes to OUT.zarr.manifest.json."),
    size: Optional[int] = typer.Option(None, "--size", help="In-plane working size in pixels "
                                       "(default 256; 64 for phantoms).", min=8),
    split: Optional[str] = typer.Option(None, "--split-fractions", help="Seeded patient split fractions, "
                                        "e.g. train=0.7,val=0.1,test=0.2 (the default)."),
    old_split: Optional[str] = typer.Option(None, "--split", hidden=True),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="Explicit split: JSON "
                                              "{patient: split} or CSV patient,split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the patient split."),
    slice_axis: Optional[int] = typer.Option(None, "--slice-axis", help="Force the slice axis "
                                             "(0, 1, 2 of the x,y,z index order); default: detected."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="Intensity normalisation per "
                                            "volume: percentile (0.5/99.5 clip -> [0,1], the default), zscore "
                                            "(the paper's MS-CMR/CHAOS), window (needs --window; the default "
                                            "with it) or none."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Keep raw intensities (= --normalize none)."),
    window: Optional[str] = typer.Option(None, "--window", help="CT intensity window LO,HI, e.g. -160,240: "
                                         "clipped, then mapped to [0,1] (or normalised as --normalize says)."),
    spacing: Optional[float] = typer.Option(None, "--spacing", help="Resample in-plane to this pixel spacing "
                                            "in mm (the paper: 1.37) before cropping; evaluation maps back."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Centre crop / pad each slice to CROP x CROP "
                                       "pixels after --spacing (the paper: 212); --size then resizes."),
    label_map: Optional[str] = typer.Option(None, "--label-map", help="Rename label values before checks, "
                                            "e.g. 200=2,500=3,600=1 (MS-CMRSeg's values; the mscmr layout "
                                            "applies that one itself)."),
    unannotated: Optional[int] = typer.Option(None, "--unannotated", help="Scribble value meaning "
                                              "'not annotated' (ACDC: 4; default: number of classes)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable or mismatched volumes "
                                  "and list them in the manifest instead of failing."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images (separate-folder layout)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of masks paired by name/suffix."),
    scribbles: Optional[Path] = typer.Option(None, "--scribbles", help="Folder of scribbles."),
    patient_regex: Optional[str] = typer.Option(None, "--patient-regex", help="Regex on the file "
                                                "stem; its first group is the patient id."),
    patients: int = typer.Option(12, "--patients", help="Number of phantom patients (SOURCE phantoms)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="The label classes, background "
                                          "included: a count '4', names 'background,RV,Myo,LV' or "
                                          "'0=background,1=liver'. Default: the layout's (ACDC, "
                                          "dataset.json), else the mask values, which must run 0..K-1. "
                                          "A mask value outside them is an error (--skip-bad: skipped)."),
):
    """Turn volumes on disk (NIfTI, MHA/NRRD, DICOM, HDF5, frames) into a dataset store.

    Prints the manifest as one JSON line on stdout; progress and a summary go to stderr.
    """
    from .. import api
    from ..errors import AlsegError

    if old_split is not None:
        raise AlsegError("prep --split is now --split-fractions (other commands' --split names one split)")
    if no_normalize and normalize not in (None, "none"):
        raise AlsegError("give --normalize or --no-normalize, not both")
    if split and split_file:
        raise AlsegError("give --split-fractions or --split-file, not both")
    # a bar on a terminal only: in a log, error output stays exactly one line
    reporter = progress_mode() if err_console.is_terminal else None
    manifest = api.prep(
        source, out, size=size, split=split, split_file=split_file, seed=seed,
        slice_axis=slice_axis, normalize="none" if no_normalize else (normalize or True),
        window=window, spacing=spacing, crop=crop, label_map=label_map, unannotated=unannotated,
        skip_bad=skip_bad, force=force, images=images, masks=masks, scribbles=scribbles,
        patient_regex=patient_regex, patients=patients, classes=classes, progress=reporter)
    _summary(manifest)
    emit(manifest)


def _summary(m: dict) -> None:
    table = Table(title=f"dataset {m['outputs']['dataset']}", show_header=False)
    table.add_row("layout", str(m["layout"]))
    table.add_row("volumes / patients", f"{m['num_volumes']} / {m['num_patients']}")
    table.add_row("slices", f"{m['num_slices']} at {m['size']} px, {m['channels']} channel(s), "
                  f"slice axis {m['slice_axis']}")
    table.add_row("classes", f"{m['num_classes']}: " + ", ".join(m["classes"].values()))
    for kind, per_split in (m.get("labelled_slices") or {}).items():
        table.add_row(f"slices with {kind}", ", ".join(f"{k} {v}" for k, v in per_split.items()))
    table.add_row("splits (slices)", ", ".join(f"{k} {v}" for k, v in m["splits"].items()))
    table.add_row("splits (patients)", ", ".join(f"{k} {v}" for k, v in m["split_patients"].items()))
    if m["skipped"]:
        table.add_row("skipped", f"{len(m['skipped'])} (listed in the manifest)")
    err_console.print(table)
