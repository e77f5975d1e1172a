"""Segmentation losses of method.md section 5.

UNet (full masks):  0.5 * (CE + Dice) over all classes.
DMPLS (scribbles):  0.5*(pCE(p1) + pCE(p2)) + 0.5 * 0.5*(Dice(p1, PL) + Dice(p2, PL)),
                    PL = argmax(b*p1 + (1-b)*p2), b ~ U(0, 1) drawn once per step.
pCE is cross-entropy over annotated pixels only (the store's ``unannotated`` value is ignored).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """1 - mean over classes of the soft Dice over the whole batch.

    ``probs`` (B, K, H, W) softmax (or (B, K, D, H, W) for volumes); ``target`` (B, H, W)
    (or (B, D, H, W)) integer labels in [0, K).
    """
    k = probs.shape[1]
    onehot = F.one_hot(target.long(), k).movedim(-1, 1).to(probs.dtype)
    dims = (0,) + tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def full_loss(logits: torch.Tensor, target: torch.Tensor, weight=None) -> torch.Tensor:
    """UNet loss 0.5 * (CE + Dice); ``weight``: optional per-class CE weights."""
    return 0.5 * (F.cross_entropy(logits, target.long(), weight=weight) + soft_dice_loss(logits.softmax(1), target))


def partial_ce(logits: torch.Tensor, scribble: torch.Tensor, unannotated: int, weight=None) -> torch.Tensor:
    """Cross-entropy over annotated pixels only (mean over them)."""
    return F.cross_entropy(logits, scribble.long(), weight=weight, ignore_index=int(unannotated))


def mixed_pseudo_label(p1: torch.Tensor, p2: torch.Tensor, beta: float) -> torch.Tensor:
    """PL = argmax(beta*p1 + (1-beta)*p2) over classes, with no gradient."""
    with torch.no_grad():
        return (beta * p1 + (1.0 - beta) * p2).argmax(1)


def dmpls_loss(logits1: torch.Tensor, logits2: torch.Tensor, scribble: torch.Tensor, unannotated: int,
               beta: float, weight=None) -> torch.Tensor:
    """DMPLS loss of Luo et al. 2022 with the given mixing weight ``beta``."""
    p1, p2 = logits1.softmax(1), logits2.softmax(1)
    pce = 0.5 * (partial_ce(logits1, scribble, unannotated, weight)
                 + partial_ce(logits2, scribble, unannotated, weight))
    pl = mixed_pseudo_label(p1, p2, beta)
    return pce + 0.5 * 0.5 * (soft_dice_loss(p1, pl) + soft_dice_loss(p2, pl))
