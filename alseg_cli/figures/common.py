"""What every picture shares: a headless matplotlib, class colours, an atomic PNG write."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path

# agreement colours per foreground class (tab10 without red, which marks disagreement)
CLASS_COLOURS = np.array([(0.12, 0.47, 0.71), (0.17, 0.63, 0.17), (0.58, 0.40, 0.74), (1.00, 0.50, 0.05),
                          (0.09, 0.75, 0.81), (0.74, 0.74, 0.13), (0.89, 0.47, 0.76), (0.55, 0.34, 0.29)])
DISAGREE = (0.86, 0.08, 0.08)
# label colours (0-255) of files handed to annotation tools: CVAT's labelmap.txt, RGB label
# PNGs, ITK-SNAP's labels.txt and prediction overlays, so a class looks the same everywhere
LABEL_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                 (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60)]


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def class_colour(c: int):
    return tuple(CLASS_COLOURS[(int(c) - 1) % len(CLASS_COLOURS)])


def save_png(fig, out, force: bool) -> Path:
    """Write the figure to ``out`` atomically (nothing half-written) and close it."""
    plt = pyplot()
    out = Path(out)
    try:
        with atomic_path(out, force=force) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) slice -> (H, W) in [0, 1] for display (first channel, its own range)."""
    x = np.asarray(image[0], dtype=np.float64)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)
