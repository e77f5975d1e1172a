"""Per-pixel uncertainty scores as pure torch functions of probabilities, and reductions.

``probs`` has shape (S, b, K, H, W): S stochastic passes (MC dropout) or ensemble members
(S = 1 for a single deterministic model), b slices, K classes. Every score returns (b, H, W);
``reduce_pixels`` turns that into one score per slice (baal-style named reductions).
Natural logarithms throughout; 0 log 0 is taken as 0.
"""
from __future__ import annotations

import torch

from ..errors import AlsegError

REDUCTIONS = ("mean", "max", "sum")


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    # xlogy gives 0 * log 0 = 0 exactly, without an epsilon that would bias small entropies
    return -torch.special.xlogy(p, p).sum(dim=dim)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction: H[mean_s p_s] (one model: S = 1; ensemble entropy)."""
    return _entropy(probs.float().mean(0), dim=1)


def bald(probs: torch.Tensor) -> torch.Tensor:
    """Mutual information H[mean_s p_s] - mean_s H[p_s] (Gal et al. 2017)."""
    p = probs.float()
    return _entropy(p.mean(0), dim=1) - _entropy(p, dim=2).mean(0)


def mc_variance(probs: torch.Tensor) -> torch.Tensor:
    """Variance of the class probabilities over passes (population variance), mean over classes."""
    return probs.float().var(dim=0, unbiased=False).mean(dim=1)


def variance_ratio(probs: torch.Tensor) -> torch.Tensor:
    """1 - (votes for the modal class) / M, votes = each member's argmax (Beluch et al. 2018)."""
    m, _, k = probs.shape[:3]
    votes = probs.argmax(dim=2)                                   # (M, b, H, W)
    counts = torch.nn.functional.one_hot(votes, k).sum(dim=0)     # (b, H, W, K)
    return 1.0 - counts.max(dim=-1).values.float() / m


PIXEL_SCORES = {
    "entropy": entropy,
    "ensemble-entropy": entropy,
    "bald": bald,
    "mc-variance": mc_variance,
    "variance-ratio": variance_ratio,
}


def reduce_pixels(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """(b, H, W) pixel scores -> (b,) slice scores."""
    if how not in REDUCTIONS:
        raise AlsegError(f"--reduce {how!r}: choose one of {', '.join(REDUCTIONS)}")
    flat = scores.reshape(scores.shape[0], -1)
    return getattr(flat, how)(dim=1) if how != "max" else flat.max(dim=1).values
