"""One 3D volume in memory, the unit every reader produces and every store writes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np


@dataclass
class Volume:
    """One 3D volume with the slice axis first, at native in-plane resolution."""

    name: str
    patient: str
    image: np.ndarray                      # (Z, C, H, W) float32, normalised
    mask: Optional[np.ndarray] = None      # (Z, H, W) uint8
    scribble: Optional[np.ndarray] = None  # (Z, H, W) uint8
    spacing: Optional[Sequence[float]] = None  # (z, y, x) in mm, None when unknown
    affine: Optional[np.ndarray] = None    # 4x4 of the source file, when known
    source: str = ""
    meta: Dict = field(default_factory=dict)  # e.g. slice_axis used, for native reconstruction
    native_mask: Optional[np.ndarray] = None  # (Z, H0, W0) before resampling/cropping; = mask if unset

    def __post_init__(self):
        if self.native_mask is None:
            self.native_mask = self.mask
