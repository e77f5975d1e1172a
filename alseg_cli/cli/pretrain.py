"""`alseg pretrain`: train a contrastive ResNet-18 encoder (GCL, or Peng's SP-Con) on a dataset store."""
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


def _lambdas(text: Optional[str]):
    if text is None:
        return None
    try:
        pairs = [item.split("=") for item in text.replace(" ", "").split(",") if item]
        return {k: float(v) for k, v in pairs}
    except ValueError:
        raise typer.BadParameter(f"--lambdas {text!r}: give meta=weight pairs, e.g. position=1,patient=0.01")


def _gamma(text: Optional[str]):
    if text is None:
        return None, None
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--gamma {text!r}: give START,END, e.g. 2,50")
    return start, end


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (DATASET.zarr) from `alseg prep`."),
    out: Path = typer.Option(..., "-o", "--out", help="ENCODER_DIR: encoder.pt, config.json, loss.json, "
                             "loss.png, manifest.json and a per-epoch checkpoint.pt."),
    loss: str = typer.Option("gcl", "--loss", help="gcl (the paper's group contrastive loss, eq. 5) or "
                             "sp-supcon (Peng et al. 2021: self-paced supervised contrast over --meta labels)."),
    groups: Optional[str] = typer.Option(None, "--groups", help="Groups of the GCL loss (default patient,volume): any of "
                               "slice,volume,patient (comma separated), or 'none' for plain NT-Xent. G of "
                               "eq. 4 is slices / groups for patient and volume; the adjacent-slice groups "
                               "overlap (k-1, k, k+1 around every slice), so for them G is their mean "
                               "size, (3Z - 2) / Z per volume of Z slices, not slices / groups (= 1)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="l0,l1,l2,l3 of eq. 5 (NT-Xent, patient, "
                                          "volume, slice). Default: the paper's best for the groups, e.g. "
                                          "1,0.05,0.35,0 for patient+volume."),
    meta: Optional[str] = typer.Option(None, "--meta", help="sp-supcon: meta-labels, any of position (S "
                                       "slice-position partitions per volume), patient, phase (ED/ES from "
                                       "ACDC-style '<patient>_frameNN' names). Default: all the store knows."),
    lambdas: Optional[str] = typer.Option(None, "--lambdas", help="sp-supcon: weight per meta-label (default "
                                          "position=1,patient=0.01,phase=0.001, Peng's table 5)."),
    gamma: Optional[str] = typer.Option(None, "--gamma", help="sp-supcon: pace START,END of the self-paced "
                                        "weights, gamma(e) = start + (end - start)(e/E)^0.5 (default 2,50)."),
    sp_mode: Optional[str] = typer.Option(None, "--sp-mode", help="sp-supcon: self-paced weights linear "
                                          "(max(0, 1 - l/gamma), the default) or hard (1[l < gamma])."),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="sp-supcon: S, position partitions "
                                             "per volume (default 3, Peng's for ACDC and Hippocampus)."),
    scans_per_batch: Optional[int] = typer.Option(None, "--scans-per-batch", help="sp-supcon: volumes per "
                                                  "batch, one slice from each partition (default 10)."),
    correct_grad: Optional[bool] = typer.Option(None, "--correct-grad/--no-correct-grad", help="sp-supcon: "
                                                "divide the loss by the mean self-paced weight (the reference "
                                                "code's option; off by default)."),
    tau: Optional[float] = typer.Option(None, "--tau", help="Temperature (default 0.5; sp-supcon 0.07)."),
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
    """Train a contrastive ResNet-18 encoder: by default GCL, NT-Xent plus patient/volume/slice
    group losses (Vepa et al. 2024, eq. 4-5) with the group batch sampler; with --loss
    sp-supcon, Peng et al.'s self-paced meta-label contrast with the position-partition sampler.

    Two augmented views of every slice per step; a checkpoint after every epoch (--resume
    continues after a kill). Prints the encoder manifest as one JSON line on stdout;
    the progress bar (loss, slices/s) goes to stderr.
    """
    from .. import api

    g_start, g_end = _gamma(gamma)
    manifest = api.pretrain(dataset, out, loss=loss, meta=meta, lambdas=_lambdas(lambdas), gamma_start=g_start,
                            gamma_end=g_end, sp_mode=sp_mode, partitions=partitions,
                            scans_per_batch=scans_per_batch, correct_grad=correct_grad, groups=groups, weights=_weights(weights), tau=tau, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, size=size, seed=seed,
                            device=device, workers=workers, resume=resume, force=force, preset=preset,
                            split=split, progress=progress_mode())
    err_console.print(f"encoder {manifest['outputs']['encoder']}: {manifest['epochs_done']} epochs, "
                      f"final loss {manifest['final_loss']:.4f}", highlight=False)
    emit(manifest)
