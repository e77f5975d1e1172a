"""`alseg pretrain`: train a group-contrastive (GCL) ResNet-18 encoder on a dataset store."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, err_console, handle_errors, progress_mode


def _weights(text: Optional[str]):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise typer.BadParameter(f"--weights {text!r}: give four numbers l0,l1,l2,l3 e.g. 1,0.05,0.35,0")
    if len(values) != 4:
        raise typer.BadParameter(f"--weights {text!r}: give four numbers l0,l1,l2,l3 e.g. 1,0.05,0.35,0")
    return values


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (DATASET.zarr) from `alseg prep`."),
    out: Path = typer.Option(..., "-o", "--out", help="ENCODER_DIR: encoder.pt, config.json, loss.json, "
                             "loss.png, manifest.json and a per-epoch checkpoint.pt."),
    groups: str = typer.Option("patient,volume", "--groups", help="Groups of the GCL loss: any of "
                               "slice,volume,patient (comma separated), or 'none' for plain NT-Xent. G of "
                               "eq. 4 is slices / groups for patient and volume; the adjacent-slice groups "
                               "overlap (k-1, k, k+1 around every slice), so for them G is their mean "
                               "size, (3Z - 2) / Z per volume of Z slices, not slices / groups (= 1)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="l0,l1,l2,l3 of eq. 5 (NT-Xent, patient, "
                                          "volume, slice). Default: the paper's best for the groups, e.g. "
                                          "1,0.05,0.35,0 for patient+volume."),
    tau: Optional[float] = typer.Option(None, "--tau", help="Temperature (default 0.5)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default 100; quick preset 3)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per batch, tuples included "
                                             "(default 8, or 9 with two groups)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate (default 3e-4)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Adam weight decay (default 1e-6)."),
    size: Optional[int] = typer.Option(None, "--size", help="Training size in pixels (default: the store's; "
                                       "quick preset 64, paper preset 256)."),
    split: str = typer.Option("train", "--split", help="Pool to train on: a split of the store, or 'all'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation, sampler and augmentations."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA with mixed precision when present), cpu, cuda."),
    workers: int = typer.Option(0, "--workers", help="CPU threads for torch on CPU (0: torch's default); "
                                "the pool is held in memory, so no loader processes are needed."),
    preset: Optional[str] = typer.Option(None, "--preset", help="quick (64 px, 3 epochs: minutes on a CPU) "
                                         "or paper (256 px, 100 epochs); explicit options win."),
    resume: bool = typer.Option(False, "--resume", help="Continue from ENCODER_DIR/checkpoint.pt (after a kill) "
                                "with the same options."),
    force: bool = typer.Option(False, "--force", help="Delete an existing ENCODER_DIR and start over."),
):
    """Train a group-contrastive (GCL) ResNet-18 encoder: NT-Xent plus patient/volume/slice
    group losses (Vepa et al. 2024, eq. 4-5) with the group batch sampler.

    Two augmented views of every slice per step; a checkpoint after every epoch (--resume
    continues after a kill). Prints the encoder manifest as one JSON line on stdout;
    the progress bar (loss, slices/s) goes to stderr.
    """
    from .. import api

    manifest = api.pretrain(dataset, out, groups=groups, weights=_weights(weights), tau=tau, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, size=size, seed=seed,
                            device=device, workers=workers, resume=resume, force=force, preset=preset,
                            split=split, progress=progress_mode())
    err_console.print(f"encoder {manifest['outputs']['encoder']}: {manifest['epochs_done']} epochs, "
                      f"final loss {manifest['final_loss']:.4f}", highlight=False)
    emit(manifest)
