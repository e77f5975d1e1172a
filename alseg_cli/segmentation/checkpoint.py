"""A member's training state, shared by the 2D and 3D trainers: resumed from ``last.pt``,
updated at every validation (curve, ``best.pt``, ``last.pt``, written atomically), and
finished into ``curve.json``, ``curve.png`` and ``done.json``."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..atomic import write_json
from ..device import load_checkpoint
from .validate import write_curve_png


@dataclass
class MemberState:
    mdir: Path
    it: int = 0
    curve: List[Dict] = field(default_factory=list)
    best: float = -1.0
    best_it: int = 0
    best_why: Optional[str] = None
    seconds: float = 0.0            # training time before this process (resumed runs)
    val_seconds: float = 0.0

    @classmethod
    def resume(cls, mdir: Path, net, opt, gen, dev, extra=None) -> "MemberState":
        """A fresh state, or the one ``last.pt`` holds (weights, optimiser and generators restored;
        ``extra``: a module trained beside the network, e.g. ARCO's teacher and heads)."""
        if not (mdir / "last.pt").exists():
            return cls(mdir)
        ck = load_checkpoint(mdir / "last.pt", map_location=dev)
        net.load_state_dict(ck["state_dict"])
        if extra is not None:
            extra.load_state_dict(ck["extra"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        return cls(mdir, ck["iteration"], ck["curve"], ck["best_val_dice"], ck["best_iteration"],
                   ck.get("best_degenerate"), ck["seconds"], ck.get("val_seconds", 0.0))

    def validated(self, net, opt, gen, config, vd: float, why, losses, elapsed: float, extra=None) -> None:
        """Record the validation at iteration ``self.it``; keep the best checkpoint; save last.pt."""
        self.curve.append({"iteration": self.it, "loss": float(np.mean(losses)), "val_dice": vd,
                           "lr": opt.param_groups[0]["lr"], "seconds": round(elapsed, 3), "degenerate": why})
        if vd is None or vd > self.best:        # None: no validation, the last checkpoint is kept
            self.best, self.best_it, self.best_why = (self.best if vd is None else vd), self.it, why
            torch.save({"state_dict": net.state_dict(), "config": config, "iteration": self.it, "val_dice": vd},
                       self.mdir / "best.pt")
        tmp = self.mdir / "last.pt.tmp"
        torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "iteration": self.it, "curve": self.curve,
                    "best_val_dice": self.best, "best_iteration": self.best_it, "seconds": elapsed,
                    "val_seconds": self.val_seconds, "config": config, "best_degenerate": self.best_why,
                    **({"extra": extra.state_dict()} if extra is not None else {})}, tmp)
        os.replace(tmp, self.mdir / "last.pt")

    def finish(self, config, seed: int, seconds: float, **extra) -> Dict:
        """The member's record (done.json), with the curve and its plot beside it."""
        write_json(self.mdir / "curve.json", self.curve)
        write_curve_png(self.curve, self.mdir / "curve.png", title=f"{config['model']} seed {seed}")
        validated = any(c["val_dice"] is not None for c in self.curve)
        done = {"seed": seed, "best_val_dice": self.best if validated else None, "best_iteration": self.best_it, "dir": self.mdir.name,
                "iterations": self.it, "seconds": round(seconds, 3),
                "it_per_s": round(self.it / max(1e-9, seconds), 3),
                # training speed without the validation passes (what the benchmark compares)
                "validation_seconds": round(self.val_seconds, 3), "degenerate": self.best_why,
                "train_it_per_s": round(self.it / max(1e-9, seconds - self.val_seconds), 3), **extra}
        write_json(self.mdir / "done.json", done)
        return done


def finished(mdir: Path) -> Optional[Dict]:
    """The record of a member that finished before an interruption, or None."""
    return json.loads((mdir / "done.json").read_text()) if (mdir / "done.json").exists() else None


def timer(state: MemberState) -> float:
    """A start time such that time.time() - start counts the resumed member's earlier time too."""
    return time.time() - state.seconds
