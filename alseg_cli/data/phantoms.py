"""Synthetic cardiac-like phantoms: nested ellipses for LV, myocardium and RV.

Shapes change smoothly over slices (base to apex) and between patients; each patient has
two "frames" (diastole larger, systole smaller), with noise and an intensity drift.
Scribbles are thin skeleton-like strokes derived from the masks (value 4 = unannotated),
as in the ACDC scribble release. Everything is seeded, so phantoms are reproducible.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy import ndimage

from .volume import Volume

UNANNOTATED = 4
CLASSES = {0: "background", 1: "RV", 2: "myocardium", 3: "LV"}


def _ellipse(yy, xx, cy, cx, ry, rx, angle):
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def phantom_volume(rng: np.random.Generator, size: int, slices: int, scale: float, params: dict):
    """One volume: image (Z,1,H,W) float32 in [0,1], mask (Z,H,W) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((slices, size, size), np.float32)
    mask = np.zeros((slices, size, size), np.uint8)
    for k in range(slices):
        t = k / max(1, slices - 1)                  # 0 base .. 1 apex
        shrink = scale * (1.0 - 0.55 * t)
        cy = params["cy"] + 2.0 * np.sin(np.pi * t)
        cx = params["cx"]
        r_lv = params["r_lv"] * shrink
        wall = params["wall"] * (0.8 + 0.2 * scale)
        lv = _ellipse(yy, xx, cy, cx, r_lv, r_lv * params["ecc"], params["angle"])
        myo = _ellipse(yy, xx, cy, cx, r_lv + wall, (r_lv + wall) * params["ecc"], params["angle"]) & ~lv
        rv_r = params["r_rv"] * shrink * (1.0 - 0.4 * t)
        rv = _ellipse(yy, xx, cy - 0.2 * r_lv, cx - (r_lv + wall + 0.6 * rv_r), rv_r * 1.3, rv_r * 0.7,
                      params["angle"] + 0.3) & ~(lv | myo)
        if t > 0.9:
            rv[:] = False                           # RV vanishes towards the apex
        mask[k][rv] = 1
        mask[k][myo] = 2
        mask[k][lv] = 3
        body = _ellipse(yy, xx, size / 2, size / 2, size * 0.45, size * 0.4, 0.0)
        base = 0.15 * body + 0.85 * lv + 0.35 * myo + 0.7 * rv
        img[k] = ndimage.gaussian_filter(base.astype(np.float32), 1.0)
    drift = params["gain"] * (1.0 + params["drift"] * np.linspace(-1, 1, size))[None, None, :]
    img = img * drift + rng.normal(0, params["noise"], img.shape).astype(np.float32)
    img = np.clip(img, 0, None)
    img = (img - img.min()) / max(1e-6, float(img.max() - img.min()))
    return img[:, None].astype(np.float32), mask


def scribbles_from_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thin strokes inside each class region (eroded core, thinned), rest unannotated."""
    out = np.full(mask.shape, UNANNOTATED, np.uint8)
    for k in range(mask.shape[0]):
        for c in np.unique(mask[k]):
            region = mask[k] == c
            core = ndimage.binary_erosion(region, iterations=3 if c else 8)
            if not core.any():
                core = region
            edge = core & ~ndimage.binary_erosion(core)
            keep = rng.random(edge.shape) < 0.6
            out[k][edge & keep] = c
    return out


def make_phantoms(patients: int = 12, size: int = 64, slices: int = 8, seed: int = 0) -> Iterator[Volume]:
    """Yield 2 volumes (frames) per patient; patient ids ``phantom000`` ..."""
    rng = np.random.default_rng(seed)
    for p in range(patients):
        params = {
            "cy": size * rng.uniform(0.45, 0.55), "cx": size * rng.uniform(0.5, 0.6),
            "r_lv": size * rng.uniform(0.10, 0.16), "wall": size * rng.uniform(0.04, 0.06),
            "r_rv": size * rng.uniform(0.10, 0.15), "ecc": rng.uniform(0.8, 1.2),
            "angle": rng.uniform(-0.5, 0.5), "noise": rng.uniform(0.03, 0.08),
            "gain": rng.uniform(0.7, 1.3), "drift": rng.uniform(-0.3, 0.3),
        }
        z = int(slices + rng.integers(-2, 3)) if slices > 4 else slices
        for frame, scale in ((1, 1.0), (2, rng.uniform(0.7, 0.85))):
            image, mask = phantom_volume(rng, size, z, scale, params)
            name = f"phantom{p:03d}_frame{frame:02d}"
            yield Volume(name=name, patient=f"phantom{p:03d}", image=image, mask=mask,
                         scribble=scribbles_from_mask(mask, rng), spacing=(10.0, 1.5, 1.5),
                         affine=np.diag([1.5, 1.5, 10.0, 1.0]), source=f"phantom:{seed}:{p}")


def phantom_attrs() -> dict:
    return {"num_classes": 4, "classes": {str(k): v for k, v in CLASSES.items()},
            "unannotated": UNANNOTATED}
