"""Batched, seeded SimCLR-style augmentations for GCL pretraining (method.md section 2).

random resized crop (scale 0.8-1, ratio 3/4-4/3) + horizontal flip (p 0.5) + random affine
(15 degrees, translate 0.2, scale 0.8-1.2, shear 10 degrees) are composed into ONE affine
warp per image (a single ``grid_sample``, so the image is interpolated once), then Gaussian
blur (kernel 5, sigma 0.1-2) and random erasing (p 0.2, torchvision's default area
0.02-0.33 and aspect 0.3-3.3, value 0). All randomness is drawn from an explicit
``torch.Generator`` on the CPU, so a seed gives the same views on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple = (0.8, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    degrees: float = 15.0
    translate: float = 0.2
    scale: tuple = (0.8, 1.2)
    shear: float = 10.0
    blur_kernel: int = 5
    blur_sigma: tuple = (0.1, 2.0)
    erase_p: float = 0.2
    erase_scale: tuple = (0.02, 0.33)
    erase_ratio: tuple = (0.3, 3.3)


def _uniform(n, lo, hi, gen):
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _affine_matrices(n: int, cfg: AugmentConfig, gen) -> torch.Tensor:
    """(n, 2, 3) maps from output to input coordinates in [-1, 1] (affine_grid's convention)."""
    # random resized crop: a window of relative area s and aspect r, anywhere it fits
    area = _uniform(n, *cfg.crop_scale, gen)
    log_r = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), gen)
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r).clamp(max=1.0)     # crop width / image width
    ch = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - cw) * (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1)
    cy = (1 - ch) * (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1)
    flip = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < cfg.flip_p, -1.0, 1.0)
    crop = torch.zeros(n, 3, 3, dtype=torch.float64)
    crop[:, 0, 0], crop[:, 0, 2] = cw * flip, cx
    crop[:, 1, 1], crop[:, 1, 2] = ch, cy
    crop[:, 2, 2] = 1
    # random affine (applied after the crop in image space, so its inverse comes first)
    ang = torch.deg2rad(_uniform(n, -cfg.degrees, cfg.degrees, gen))
    shx = torch.deg2rad(_uniform(n, -cfg.shear, cfg.shear, gen))
    sc = _uniform(n, *cfg.scale, gen)
    tx = _uniform(n, -cfg.translate, cfg.translate, gen) * 2   # fraction of size -> [-1,1] units
    ty = _uniform(n, -cfg.translate, cfg.translate, gen) * 2
    fwd = torch.zeros(n, 3, 3, dtype=torch.float64)
    cos, sin, tan = torch.cos(ang), torch.sin(ang), torch.tan(shx)
    # rotation @ shear-x, scaled, then translated
    fwd[:, 0, 0], fwd[:, 0, 1] = sc * cos, sc * (cos * tan - sin)
    fwd[:, 1, 0], fwd[:, 1, 1] = sc * sin, sc * (sin * tan + cos)
    fwd[:, 0, 2], fwd[:, 1, 2], fwd[:, 2, 2] = tx, ty, 1
    theta = crop @ torch.linalg.inv(fwd)
    return theta[:, :2].float()


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image separable Gaussian blur with reflect padding (grouped convolutions)."""
    n, c, h, w = x.shape
    r = torch.arange(k, dtype=torch.float32, device=x.device) - (k - 1) / 2
    ker = torch.exp(-(r[None] ** 2) / (2 * sigma.to(x.device, torch.float32)[:, None] ** 2))
    ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)   # (n*c, k)
    y = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="reflect")
    y = F.conv2d(y, ker[:, None, None, :].to(x.dtype), groups=n * c)
    y = F.conv2d(y, ker[:, None, :, None].to(x.dtype), groups=n * c)
    return y.reshape(n, c, h, w)


def _erase_masks(n: int, h: int, w: int, cfg: AugmentConfig, gen) -> torch.Tensor:
    """(n, 1, h, w) bool: a random rectangle for the images chosen with p = erase_p."""
    on = torch.rand(n, generator=gen) < cfg.erase_p
    area = _uniform(n, *cfg.erase_scale, gen) * h * w
    ratio = torch.exp(_uniform(n, math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1]), gen))
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1).float()).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1).float()).long()
    yy = torch.arange(h)[None, :, None]
    xx = torch.arange(w)[None, None, :]
    box = ((yy >= y0[:, None, None]) & (yy < (y0 + eh)[:, None, None])
           & (xx >= x0[:, None, None]) & (xx < (x0 + ew)[:, None, None]))
    return (box & on[:, None, None])[:, None]


def augment(x: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """One random view of every image in ``x`` (N, C, H, W); ``gen`` is a CPU generator."""
    n, _, h, w = x.shape
    theta = _affine_matrices(n, cfg, gen).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sigma = _uniform(n, *cfg.blur_sigma, gen)
    if min(h, w) > cfg.blur_kernel // 2:
        y = _gaussian_blur(y, sigma, cfg.blur_kernel)
    mask = _erase_masks(n, h, w, cfg, gen).to(x.device)
    return y.masked_fill(mask, 0.0)
