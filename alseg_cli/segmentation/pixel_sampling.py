"""ARCO's anchor samplers (You et al. 2023, section 3.3; seed-methods.md section 2).

Pure, seeded functions of a candidate mask (B, H, W) that return flat indices into B*H*W:

- "ns"  naive sampling: n uniform draws from all candidates (with replacement);
- "sg"  stratified group sampling: the groups are (image, grid cell) pairs, g x g cells per
        image; group m gets n_m = n |P_m| / |P| draws by largest remainder (proportional, so
        the pooled mean of the draws is unbiased: the paper's printed 1/M form is not unless
        every group is the same size), drawn with replacement inside it;
- "sag" stratified antithetic: as sg, but draws come in pairs p, p' mirrored through the
        cell's geometric centre (c_m - p = p' - c_m); a partner that is not a candidate is
        replaced by the candidate of the cell nearest to p' (the paper is silent), and an
        odd n_m leaves one unpaired draw.

Drawing with replacement makes Var(SG) = Var(NS) - (1/n) sum_m (|P_m|/|P|)(mu_m - mu)^2 hold
exactly (Theorem 3.2 with the group weights the printed form lacks); tests check it.
"""
from __future__ import annotations

from typing import Tuple

import torch

SAMPLERS = ("sg", "sag", "ns")


def cell_of(h: int, w: int, grid: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(H, W) row-cell and column-cell index of every pixel: floor(grid * r / H) etc."""
    rows = (torch.arange(h) * grid) // h
    cols = (torch.arange(w) * grid) // w
    return rows[:, None].expand(h, w), cols[None, :].expand(h, w)


def allocate(sizes: torch.Tensor, n: int) -> torch.Tensor:
    """Largest-remainder allocation of n draws proportional to ``sizes`` (sums to n; each
    within 1 of n * size / total). Empty groups get none."""
    sizes = sizes.double()
    total = sizes.sum()
    if n <= 0 or total <= 0:
        return torch.zeros_like(sizes, dtype=torch.long)
    exact = n * sizes / total
    base = exact.floor().long()
    left = n - int(base.sum())
    if left:
        order = torch.argsort(exact - base, descending=True, stable=True)
        base[order[:left]] += 1
    return base


def group_ids(cand: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, H, W) -> id of each pixel's (image, cell) group: b * grid^2 + row_cell * grid + col_cell."""
    b, h, w = cand.shape
    rc, cc = cell_of(h, w, grid)
    return (torch.arange(b)[:, None, None] * grid * grid + rc * grid + cc).expand(b, h, w)


def stratified_sample(cand: torch.Tensor, n: int, grid: int = 4, mode: str = "sg",
                      gen: torch.Generator = None) -> torch.Tensor:
    """n flat indices into cand.numel() drawn from the True pixels of ``cand`` (B, H, W) by
    ``mode`` (ns, sg, sag); empty when there is no candidate."""
    if mode not in SAMPLERS:
        raise ValueError(f"sampler {mode!r}: choose {SAMPLERS}")
    cand = cand.bool().cpu()
    flat = torch.nonzero(cand.reshape(-1)).flatten()
    if flat.numel() == 0 or n <= 0:
        return torch.zeros(0, dtype=torch.long)
    if mode == "ns":
        return flat[torch.randint(0, flat.numel(), (n,), generator=gen)]
    b, h, w = cand.shape
    gid = group_ids(cand, grid).reshape(-1)[flat]
    order = torch.argsort(gid, stable=True)
    flat, gid = flat[order], gid[order]
    ids, counts = torch.unique_consecutive(gid, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    alloc = allocate(counts, n)
    picks = []
    for g, start, size, k in zip(ids.tolist(), starts.tolist(), counts.tolist(), alloc.tolist()):
        if not k:
            continue
        members = flat[start:start + size]
        if mode == "sg":
            picks.append(members[torch.randint(0, size, (k,), generator=gen)])
            continue
        first = members[torch.randint(0, size, ((k + 1) // 2,), generator=gen)]
        picks.append(first)
        if k > 1:
            picks.append(_partners(first[: k // 2], members, g % (grid * grid), h, w, grid))
    return torch.cat(picks)


def _partners(points: torch.Tensor, members: torch.Tensor, cell: int, h: int, w: int, grid: int) -> torch.Tensor:
    """The antithetic partner of each point: its mirror image through the cell's geometric centre,
    or, where that pixel is not a candidate, the candidate of the cell nearest to it."""
    r0, r1 = _bounds(cell // grid, h, grid)
    c0, c1 = _bounds(cell % grid, w, grid)
    image = points // (h * w)
    pr, pc = (points % (h * w)) // w, points % w
    mr, mc = (r0 + r1 - 1) - pr, (c0 + c1 - 1) - pc
    mirror = image * h * w + mr * w + mc
    present = torch.isin(mirror, members)
    if present.all():
        return mirror
    cr, cc = (members % (h * w)) // w, members % w
    d = (cr[None, :] - mr[:, None]) ** 2 + (cc[None, :] - mc[:, None]) ** 2
    nearest = members[d.argmin(dim=1)]
    return torch.where(present, mirror, nearest)


def _bounds(cell: int, size: int, grid: int) -> Tuple[int, int]:
    """[first, last + 1) of the pixels whose floor(grid * r / size) is ``cell``."""
    first = -(-cell * size // grid)
    last = -(-(cell + 1) * size // grid)
    return first, last
