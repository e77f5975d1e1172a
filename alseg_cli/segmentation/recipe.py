"""The training recipe's interchangeable parts: optimiser, learning-rate schedule, batch
sampling, class weighting, and the degenerate-model test.

The paper's recipe (method.md section 5) is the default of each: SGD with momentum 0.9 and
weight decay 1e-4, poly decay 0.9 without warm-up, uniform batches, unweighted loss. The
others exist because short schedules on a dozen labelled slices can end in a model that
predicts some class nowhere (bench_stability.py measures how often each part changes that).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from ..errors import AlsegError

OPTIMIZERS = ("sgd", "adam", "adamw")
PAPER = {"optimizer": "sgd", "lr": 0.01, "clip_grad": 0.0}     # method.md section 5
SAMPLERS = ("uniform", "foreground")
CLASS_WEIGHTS = ("none", "balanced")
AUGMENTS = ("paper", "none")


def check_recipe(optimizer: str, sampler: str, class_weights: str, augment: str, warmup: int,
                 retries: int) -> None:
    for name, value, allowed in (("--optimizer", optimizer, OPTIMIZERS), ("--sampler", sampler, SAMPLERS),
                                 ("--class-weights", class_weights, CLASS_WEIGHTS),
                                 ("--augment", augment, AUGMENTS)):
        if value not in allowed:
            raise AlsegError(f"{name} {value!r}: choose {', '.join(allowed)}")
    for name, value in (("--warmup", warmup), ("--retries", retries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AlsegError(f"{name} {value}: must be a whole number >= 0")


def resolve_recipe(network_defaults: Optional[dict], **given) -> dict:
    """optimizer / lr / clip_grad: what was given, else the network's own default recipe (the
    pretrained ResNet-50 UNet: Adam 1e-4 with clipping, as its reference), else the paper's."""
    base = {**PAPER, **(network_defaults or {})}
    return {k: (given[k] if given.get(k) is not None else base[k]) for k in PAPER}


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)


def lr_at(it: int, iterations: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` iterations (from lr / warmup), then poly decay 0.9."""
    if warmup and it < warmup:
        return lr * (it + 1) / warmup
    return lr * (1.0 - it / iterations) ** 0.9


class BatchSampler:
    """Indices of the labelled slices for one batch, from the run's generator.

    "uniform": independent uniform draws (the paper's). "foreground": half of every batch
    (rounded up) drawn from the slices that show some foreground class, so a handful of
    labelled slices that are mostly background cannot give batches with nothing to learn.
    """

    def __init__(self, kind: str, targets: torch.Tensor, foreground: List[int]):
        self.kind = kind
        self.n = targets.shape[0]
        fg = torch.zeros(self.n, dtype=torch.bool)
        for c in foreground:
            fg |= (targets == c).flatten(1).any(1)
        self.fg = torch.nonzero(fg).flatten()

    def __call__(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, self.n, (batch_size,), generator=gen)
        if self.kind == "foreground" and 0 < self.fg.numel() < self.n:
            k = (batch_size + 1) // 2
            pick[:k] = self.fg[torch.randint(0, self.fg.numel(), (k,), generator=gen)]
        return pick


def ce_weights(kind: str, targets: torch.Tensor, num_classes: int, ignore: Optional[int] = None):
    """None, or CE weights proportional to 1 / sqrt(class frequency) in the labelled slices,
    normalised to mean 1 (classes absent from them get the largest weight seen)."""
    if kind == "none":
        return None
    t = targets.flatten().long()
    if ignore is not None:
        t = t[t != ignore]
    counts = torch.bincount(t, minlength=num_classes)[:num_classes].double()
    w = torch.zeros(num_classes, dtype=torch.float64)
    seen = counts > 0
    w[seen] = counts[seen].rsqrt()
    w[~seen] = w[seen].max() if seen.any() else 1.0
    return (w / w.mean()).float()


def degenerate(pred: np.ndarray, masks: np.ndarray, num_classes: int) -> Optional[str]:
    """Why a model's validation prediction is degenerate, or None: a foreground class that
    the validation masks contain is predicted in no pixel (a dead class; all background is
    the extreme case)."""
    present = [c for c in range(1, num_classes) if (masks == c).any()]
    dead = [c for c in present if not (pred == c).any()]
    if not dead:
        return None
    if len(dead) == len(present):
        return "predicts no foreground class on validation"
    return f"never predicts class{'es' if len(dead) > 1 else ''} {', '.join(map(str, dead))} on validation"
