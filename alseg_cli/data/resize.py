"""In-plane resizing: bilinear for images, nearest for labels (both ways)."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

Size = Union[int, Tuple[int, int]]


def _hw(size: Size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_images(images: np.ndarray, size: Size) -> np.ndarray:
    """(Z, C, H, W) float -> (Z, C, h, w) float32, bilinear."""
    hw = _hw(size)
    if images.shape[-2:] == hw:
        return np.ascontiguousarray(images, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False).numpy()


def resize_labels(labels: np.ndarray, size: Size) -> np.ndarray:
    """(Z, H, W) integer labels -> (Z, h, w) uint8, nearest neighbour."""
    hw = _hw(size)
    if labels.shape[-2:] == hw:
        return np.ascontiguousarray(labels, dtype=np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.uint8))[:, None].float()
    return F.interpolate(t, size=hw, mode="nearest-exact")[:, 0].to(torch.uint8).numpy()

