"""A member's resumable state: ``last.pt`` after every validation, written atomically."""
from __future__ import annotations

import os

import torch


def save_last(mdir, net, opt, gen, it, curve, best, best_it, seconds, val_seconds, config, best_why):
    """Weights, optimiser, generators, curve and best-so-far, so a killed member continues."""
    tmp = mdir / "last.pt.tmp"
    torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "iteration": it, "curve": curve, "best_val_dice": best,
                "best_iteration": best_it, "seconds": seconds, "val_seconds": val_seconds, "config": config,
                "best_degenerate": best_why}, tmp)
    os.replace(tmp, mdir / "last.pt")
