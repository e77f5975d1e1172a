"""Per-volume intensity normalisation: clip at the 0.5/99.5 percentiles, scale to [0, 1].

Done per volume and per channel because scanners and sequences differ in gain (the MSD
Hippocampus maxima range from ~100 to 1.7e6); percentiles rather than min/max so a few
hot voxels do not squash the useful range.
"""
from __future__ import annotations

import numpy as np

LOW, HIGH = 0.5, 99.5


def normalize_volume(image: np.ndarray, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """(Z, C, H, W) -> float32 in [0, 1], each channel clipped at its own percentiles.

    A constant channel (no range) becomes all zeros rather than dividing by zero.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"expected (Z, C, H, W), got shape {image.shape}")
    out = np.empty_like(image)
    for c in range(image.shape[1]):
        chan = image[:, c]
        lo, hi = np.percentile(chan, [low, high])
        if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
            out[:, c] = 0.0
            continue
        out[:, c] = (np.clip(chan, lo, hi) - lo) / (hi - lo)
    return out
