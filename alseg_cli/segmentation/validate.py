"""Validation Dice during training and the training-curve plot.

Validation runs at the store's working size (fast, every ``val_every`` iterations):
per val volume the 3D Dice of each foreground class, mean over classes of the mean over
volumes. ``alseg evaluate`` measures at native resolution instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..metrics.dice import dice_per_class
from .recipe import degenerate


@torch.no_grad()
def predict_labels(net, images: torch.Tensor, device, batch_size: int = 16) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, images.shape[0], batch_size):
        out.append(net(images[i:i + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out).numpy().astype(np.uint8)


def validation_scores(net, images: torch.Tensor, masks: np.ndarray, volumes: np.ndarray, num_classes: int,
                      device) -> Tuple[float, Optional[str]]:
    """(validation Dice, why the prediction is degenerate or None)."""
    pred = predict_labels(net, images, device)
    classes = list(range(1, num_classes))
    per_volume = [dice_per_class(pred[volumes == v], masks[volumes == v], classes) for v in np.unique(volumes)]
    return float(np.mean(np.mean(per_volume, axis=0))), degenerate(pred, masks, num_classes)


def write_curve_png(curve, path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    its = [c["iteration"] for c in curve]
    ax.plot(its, [c["loss"] for c in curve], label="train loss", color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(its, [c["val_dice"] for c in curve], label="val Dice", color="tab:orange", marker="o", ms=3)
    ax2.set_ylabel("val Dice")
    ax2.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
