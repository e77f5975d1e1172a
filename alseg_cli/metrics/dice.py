"""Dice per class on label maps (any dimensionality: 2D slices or stacked 3D volumes).

Empty cases (method.md section 6): a class absent from both prediction and mask scores
1.0 (nothing to find, nothing wrongly found); absent from exactly one scores 0.0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def dice_per_class(prediction, mask, classes: Sequence[int]) -> np.ndarray:
    """Dice of ``prediction`` vs ``mask`` for each label in ``classes`` -> float64 array (len(classes),).

    ``prediction`` and ``mask`` are integer label arrays of the same shape (numpy or torch).
    """
    pred = np.asarray(prediction.cpu() if hasattr(prediction, "cpu") else prediction)
    ref = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from mask shape {ref.shape}")
    out = np.empty(len(classes), dtype=np.float64)
    for i, c in enumerate(classes):
        p, g = pred == c, ref == c
        denom = int(p.sum()) + int(g.sum())
        # both empty -> 1 (documented convention); one empty -> 2*0/denom = 0
        out[i] = 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom
    return out
