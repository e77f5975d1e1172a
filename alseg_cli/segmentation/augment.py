"""Training augmentation of method.md section 5, batched in torch and seeded.

Per sample: with p 0.5 a rot90 by k in {0..3} plus a flip (random axis); otherwise with
p 0.25 a rotation in [-20, 20] degrees (bilinear for images, nearest for labels, outside
the image the label becomes ``fill``: background for masks, unannotated for scribbles).
Images are already at the working size, so the final "resize" is the identity.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, fill: int = 0):
    """images (B, C, H, W) float, labels (B, H, W) integer -> augmented copies."""
    b = images.shape[0]
    u = torch.rand(b, generator=gen)
    k = torch.randint(0, 4, (b,), generator=gen)
    axis = torch.randint(0, 2, (b,), generator=gen)
    u2 = torch.rand(b, generator=gen)
    angle = (torch.rand(b, generator=gen) * 40.0 - 20.0) * math.pi / 180.0
    images, labels = images.clone(), labels.clone()
    for i in torch.nonzero(u < 0.5).flatten().tolist():  # B is small (6): a loop is cheap here
        ki, ax = int(k[i]), int(axis[i])
        images[i] = torch.flip(torch.rot90(images[i], ki, (1, 2)), (1 + ax,))
        labels[i] = torch.flip(torch.rot90(labels[i], ki, (0, 1)), (ax,))
    rot = torch.nonzero((u >= 0.5) & (u2 < 0.25)).flatten()
    if rot.numel():
        a = angle[rot]
        theta = torch.zeros(rot.numel(), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        grid = F.affine_grid(theta, list(images[rot].shape), align_corners=False)
        images[rot] = F.grid_sample(images[rot], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # shift labels by one so zero padding marks "outside", then map outside to ``fill``
        lab = (labels[rot].float() + 1)[:, None]
        lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
        lab = torch.where(lab == 0, torch.full_like(lab, fill + 1), lab) - 1
        labels[rot] = lab.to(labels.dtype)
    return images, labels
