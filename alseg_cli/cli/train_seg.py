"""`alseg train-seg`: a thin layer over alseg_cli.segmentation.train.train_seg."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, handle_errors, progress_mode


@handle_errors
def command(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr) made by 'alseg prep'."),
    labels: str = typer.Option(..., "--labels", "-l",
                               help="Selection manifest JSON, a file of slice ids (JSON list or one per line), "
                                    "or 'all' (every train-split slice)."),
    out: Path = typer.Option(..., "--out", "-o", help="MODEL_DIR to write (manifest.json, config.json, member<k>/)."),
    model: str = typer.Option("unet", "--model", "-m", help="unet | dmpls | unet-resnet50."),
    supervision: Optional[str] = typer.Option(None, "--supervision",
                                              help="full (masks) or scribble; default from the model."),
    iterations: Optional[int] = typer.Option(None, "--iterations",
                                             help="Default: max(--min-iterations, 60000 x labelled fraction)."),
    min_iterations: int = typer.Option(500, "--min-iterations", help="Floor of the default iteration count."),
    batch_size: int = typer.Option(6, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (poly decay 0.9 after any "
                                       "warm-up). Default 0.01 (the paper's); unet-resnet50: 1e-4."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer",
                                            help="sgd (momentum 0.9, wd 1e-4; the paper's default), adam, or "
                                                 "adamw (wd 1e-4). unet-resnet50 defaults to adam (its reference)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", help="Clip the gradient norm to this "
                                              "(0 = off, the default; unet-resnet50: 1.0)."),
    warmup: int = typer.Option(0, "--warmup", help="Iterations of linear learning-rate warm-up."),
    sampler: str = typer.Option("uniform", "--sampler",
                                help="uniform batches, or foreground: half of each batch from labelled "
                                     "slices that show a foreground class."),
    class_weights: str = typer.Option("none", "--class-weights",
                                      help="none, or balanced: CE weights 1/sqrt(class frequency)."),
    augment: str = typer.Option("paper", "--augment", help="paper (rot90/flip, small rotations) or none."),
    retries: int = typer.Option(0, "--retries",
                                help="Retrain a member from another seed while its best checkpoint is "
                                     "degenerate (a validation class predicted nowhere), up to N times."),
    min_val_dice: Optional[float] = typer.Option(None, "--min-val-dice",
                                                 help="With --retries: a best val Dice under this is "
                                                      "degenerate too."),
    pseudo: Optional[Path] = typer.Option(None, "--pseudo", help="Pseudo-labels from `alseg propagate` (k-NN "
                                          "label propagation, Belharbi et al.): their slices train beside the "
                                          "labelled ones, weighted by --pseudo-weight."),
    pseudo_weight: float = typer.Option(0.1, "--pseudo-weight", help="lambda of the pseudo-labelled term "
                                        "(0: the labels alone)."),
    pseudo_share: Optional[float] = typer.Option(None, "--pseudo-share", help="A fraction of every batch "
                                                 "drawn from the pseudo-labelled slices, the rest labelled "
                                                 "(default: uniform over both, as Belharbi et al.'s code)."),
    semi: Optional[str] = typer.Option(None, "--semi", help="arco: ARCO semi-supervised training on the "
                                       "pool's unlabelled slices (mean teacher + pixel contrast; unet, full masks)."),
    arco_sampler: str = typer.Option("sg", "--arco-sampler", help="ARCO's anchor sampler: sg (stratified "
                                     "groups), sag (antithetic), ns (naive, the ablation)."),
    init: Optional[Path] = typer.Option(None, "--init", help="A finished MODEL_DIR of the same network whose "
                                        "weights start training (a warm start, e.g. from the last AL round's "
                                        "model); optimiser and schedule start afresh."),
    size: Optional[int] = typer.Option(None, "--size", help="Must equal the store's working size (checked)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA + mixed precision when present), cpu, cuda."),
    val_every: int = typer.Option(200, "--val-every", help="Validation Dice every N iterations."),
    workers: int = typer.Option(0, "--workers", help="CPU threads for torch on CPU (0: torch's default). "
                                "The count changes float rounding and so the trained model (`loop --threads` "
                                "sets it per job). Recorded in the manifest's args.threads."),
    ensemble: int = typer.Option(1, "--ensemble", help="Train M members with seeds seed..seed+M-1."),
    base_channels: int = typer.Option(16, "--base-channels", help="First encoder width (paper: 16)."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights",
                                                    help="Local ResNet-50 state dict for unet-resnet50."),
    val_split: str = typer.Option("val", "--val-split", help="Split whose masked slices validate (the best "
                                  "checkpoint is kept), or none: no validation, the last checkpoint is the model."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same MODEL_DIR "
                                                        "(without it, a killed run's partial state is refused)."),
    allow_other_dataset: bool = typer.Option(False, "--allow-other-dataset",
                                             help="Accept a selection manifest made on another dataset store "
                                                  "(its ids must exist here; val/test slices are never accepted)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing MODEL_DIR."),
):
    """Train a segmentation model (UNet on masks, DMPLS on scribbles) on the labelled slices.

    Bad inputs (unknown or no labelled ids, labelled slices outside the train split, a
    selection made on another store, scribbles missing, incompatible MODEL_DIR at --resume,
    missing split) fail with one line before training starts.
    """
    from ..api import train_seg

    manifest = train_seg(dataset, labels, out, model=model, supervision=supervision, iterations=iterations,
                         min_iterations=min_iterations, batch_size=batch_size, lr=lr, size=size, seed=seed,
                         device=device, val_every=val_every, workers=workers, resume=resume, force=force,
                         ensemble=ensemble, base_channels=base_channels, backbone_weights=backbone_weights,
                         val_split=val_split, allow_other_dataset=allow_other_dataset,
                         optimizer=optimizer, clip_grad=clip_grad, warmup=warmup, sampler=sampler, class_weights=class_weights,
                         augment=augment, retries=retries, min_val_dice=min_val_dice,
                         pseudo=pseudo, pseudo_weight=pseudo_weight, pseudo_share=pseudo_share, semi=semi,
                         semi_options={"sampler": arco_sampler} if semi else None, init=init,
                         progress=progress_mode())
    emit(manifest)
