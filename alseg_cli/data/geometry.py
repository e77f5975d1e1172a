"""In-plane geometry of prep: resample to a pixel spacing, then centre crop/pad to a size.

The paper's preprocessing (section 4.1, after Valvano et al.): resample to 1.37 x 1.37 mm,
then crop or pad to 212 x 212. Each volume's plan is recorded in the store (volume attrs
``geometry``) so a prediction can be mapped back to the native grid exactly the way its
slices came: un-crop (the padded border drops, the cropped-away border is background), then
resample to the native size with nearest neighbour. Evaluation always compares against the
native mask, never a resampled one.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import AlsegError
from .resize import resize_images, resize_labels


def plan(native_hw: Sequence[int], spacing_hw: Optional[Sequence[float]], target_spacing: Optional[float],
         crop: Optional[int], where: str = "") -> Optional[Dict]:
    """The geometry of one volume, or None when neither resampling nor cropping is asked.

    ``resampled``: the in-plane size after resampling to ``target_spacing`` mm (rounded to
    whole pixels, as every resampler must); ``offset``: where the crop window starts in the
    resampled grid (negative: padding on that side).
    """
    if target_spacing is None and crop is None:
        return None
    h0, w0 = (int(native_hw[0]), int(native_hw[1]))
    h1, w1 = h0, w0
    if target_spacing is not None:
        if target_spacing <= 0:
            raise AlsegError(f"--spacing {target_spacing:g}: must be positive (mm per pixel)")
        if spacing_hw is None:
            raise AlsegError(f"{where}: no pixel spacing in the file; cannot resample to --spacing "
                             f"{target_spacing:g} (drop --spacing, or use a format that records it)")
        h1 = max(1, int(round(h0 * float(spacing_hw[0]) / target_spacing)))
        w1 = max(1, int(round(w0 * float(spacing_hw[1]) / target_spacing)))
    c = int(crop) if crop is not None else None
    size = (c, c) if c is not None else (h1, w1)
    offset = ((h1 - size[0]) // 2, (w1 - size[1]) // 2)
    return {"native": [h0, w0], "resampled": [h1, w1], "size": list(size), "offset": list(offset),
            "target_spacing": target_spacing}


def _window(n: int, start: int, size: int) -> Tuple[slice, slice]:
    """Source and destination ranges of a crop window starting at ``start`` (may be negative)."""
    lo, hi = max(0, start), min(n, start + size)
    return slice(lo, hi), slice(lo - start, hi - start)


def _crop(arr: np.ndarray, geom: Dict, fill) -> np.ndarray:
    (h1, w1), (ch, cw), (oy, ox) = geom["resampled"], geom["size"], geom["offset"]
    out = np.full(arr.shape[:-2] + (ch, cw), fill, dtype=arr.dtype)
    (sy, dy), (sx, dx) = _window(h1, oy, ch), _window(w1, ox, cw)
    out[..., dy, dx] = arr[..., sy, sx]
    return out


def forward_images(images: np.ndarray, geom: Optional[Dict], fill: float = 0.0) -> np.ndarray:
    """(Z, C, H0, W0) -> (Z, C, size): bilinear resampling, then crop/pad with ``fill``."""
    if geom is None:
        return images
    return _crop(resize_images(images, tuple(geom["resampled"])), geom, np.float32(fill))


def forward_labels(labels: np.ndarray, geom: Optional[Dict], fill: int = 0) -> np.ndarray:
    """(Z, H0, W0) -> (Z, size): nearest resampling, then crop/pad with ``fill``."""
    if geom is None:
        return labels
    return _crop(resize_labels(labels, tuple(geom["resampled"])), geom, np.uint8(fill))


def to_native(labels: np.ndarray, geom: Optional[Dict], native_hw: Sequence[int]) -> np.ndarray:
    """(Z, h, w) predictions at the store's working size -> (Z, H0, W0) on the native grid."""
    native_hw = (int(native_hw[0]), int(native_hw[1]))
    if geom is None:
        return resize_labels(labels, native_hw)
    (h1, w1), (ch, cw), (oy, ox) = geom["resampled"], geom["size"], geom["offset"]
    cropped = resize_labels(labels, (ch, cw))
    full = np.zeros(labels.shape[:1] + (h1, w1), dtype=np.uint8)   # cropped-away border: background
    (sy, dy), (sx, dx) = _window(h1, oy, ch), _window(w1, ox, cw)
    full[:, sy, sx] = cropped[:, dy, dx]
    return resize_labels(full, native_hw)
