"""`alseg embed`: one vector per slice from an encoder, or imported from a file."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, err_console, handle_errors, progress_mode


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (DATASET.zarr) from `alseg prep`."),
    out: Path = typer.Option(..., "-o", "--out", help="Embeddings store to write (EMB.zarr); required."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="SPEC: an ENCODER_DIR from `alseg "
                                          "pretrain`; resnet18:PATH.pth or resnet50:PATH.pth (local torchvision "
                                          "weights, never downloaded); a TorchScript file or a torch.export program (.pt2), "
                                          "returning (N, D); or 'pixels' "
                                          "(downsampled image, the plain Coreset baseline)."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="Import external vectors instead: .npz "
                                             "(ids + vectors), .npy (+ --ids), CSV (id,x0,x1,..), Lightly CSV "
                                             "(filenames,embedding_0,..) or a zarr store; matched by slice_id."),
    ids_file: Optional[Path] = typer.Option(None, "--ids", help="Slice ids of --from rows (one per line or a "
                                            "JSON list), for .npy and bare zarr arrays."),
    assume_order: bool = typer.Option(False, "--assume-order", help="--from rows follow the dataset's slice "
                                      "order (only when the file has no ids)."),
    split: Optional[str] = typer.Option(None, "--split", help="Embed one split only (default: every slice)."),
    half: bool = typer.Option(False, "--half", help="Store float16 vectors (half the size)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Slices per inference batch."),
    pixels_size: int = typer.Option(32, "--pixels-size", help="Grid of the 'pixels' SPEC (32 -> 1024-d)."),
    flatten: bool = typer.Option(False, "--flatten", help="Accept an encoder whose output is not (N, D) "
                                                          "and flatten it per slice (default: an error)."),
    size: Optional[int] = typer.Option(None, "--size", help="Resize slices for the network (default: the "
                                       "encoder's training size for alseg encoders, else the store's)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA with mixed precision when present), cpu, cuda."),
    workers: int = typer.Option(0, "--workers", help="CPU threads for torch on CPU (0: torch's default)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
):
    """Embed every slice of a dataset with an encoder SPEC (512-d features before the
    projection head for alseg encoders), or import external vectors with --from.

    Prints the embeddings manifest (outputs.embeddings) as one JSON line on stdout, so
    `alseg embed D --encoder E -o EMB.zarr | alseg select ...` works.
    """
    from .. import api

    manifest = api.embed(dataset, out, encoder=encoder, from_file=from_file, ids_file=ids_file,
                         assume_order=assume_order, split=split, half=half, batch_size=batch_size,
                         workers=workers, device=device, pixels_size=pixels_size, size=size, flatten=flatten, force=force,
                         progress=progress_mode())
    err_console.print(f"embeddings {manifest['outputs']['embeddings']}: {manifest['num']} x {manifest['dim']} "
                      f"({manifest['encoder']['kind']})", highlight=False)
    emit(manifest)
