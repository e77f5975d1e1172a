"""ARCO's anchor samplers (You et al. 2023, section 3.3; seed-methods.md section 2).

Pure, seeded functions of a candidate mask (B, H, W) that return flat indices into B*H*W:

- "ns"  naive sampling: n uniform draws from all candidates (with replacement);
- "sg"  stratified group sampling: the groups are (image, grid cell) pairs, g x g cells per
        image; group m gets n_m draws with E[n_m] = n |P_m| / |P| (proportional allocation,
        the remainders rounded at random: see ``allocate``), so the pooled mean of the draws
        is unbiased (the paper's printed 1/M form is not unless every group is the same size;
        a deterministic largest-remainder rounding is not either once there are more groups
        than draws to spread), drawn with replacement inside the group;
- "sag" stratified antithetic: as sg, but draws come in pairs p, p' mirrored through the
        cell's geometric centre (c_m - p = p' - c_m); an odd n_m leaves one unpaired draw.
        Where p' is not a candidate (the paper is silent) the default ``fallback="self"``
        repeats p: mirroring is an involution, so every candidate is then a partner with
        probability 1/|P_m| and the estimate stays unbiased. ``fallback="nearest"`` takes the
        candidate of the cell nearest to p' instead, which is biased wherever the candidates
        of a cell are not symmetric (measured in the tests).

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


def allocate(sizes: torch.Tensor, n: int, gen: torch.Generator = None) -> torch.Tensor:
    """An allocation of n draws proportional to ``sizes``: floor(n * size / total) each, and the
    draws left over (the fractional parts sum to a whole number) go one per group. With
    ``gen`` they are given by systematic sampling with inclusion probability = the fractional
    part, so E[n_m] = n |P_m| / |P| exactly and the pooled mean stays unbiased; without it, by
    largest remainder (deterministic, biased towards the groups it favours when n is small
    against the group count). Either way the counts sum to n and lie within 1 of
    n * size / total; empty groups get none."""
    sizes = sizes.double()
    total = sizes.sum()
    if n <= 0 or total <= 0:
        return torch.zeros_like(sizes, dtype=torch.long)
    exact = n * sizes / total
    base = exact.floor().long()
    left = n - int(base.sum())
    if not left:
        return base
    frac = exact - base
    if gen is None:
        base[torch.argsort(frac, descending=True, stable=True)[:left]] += 1
        return base
    u = float(torch.rand(1, generator=gen, dtype=torch.float64))
    edges = torch.cumsum(frac, 0)
    hits = torch.searchsorted(edges, torch.arange(left, dtype=torch.float64) + u, right=True)
    base[hits.clamp(max=sizes.numel() - 1)] += 1
    return base


def group_ids(cand: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, H, W) -> id of each pixel's (image, cell) group: b * grid^2 + row_cell * grid + col_cell."""
    b, h, w = cand.shape
    rc, cc = cell_of(h, w, grid)
    return (torch.arange(b)[:, None, None] * grid * grid + rc * grid + cc).expand(b, h, w)


FALLBACKS = ("self", "nearest")


def stratified_sample(cand: torch.Tensor, n: int, grid: int = 4, mode: str = "sg",
                      gen: torch.Generator = None, fallback: str = "self") -> torch.Tensor:
    """n flat indices into cand.numel() drawn from the True pixels of ``cand`` (B, H, W) by
    ``mode`` (ns, sg, sag); empty when there is no candidate."""
    if mode not in SAMPLERS or fallback not in FALLBACKS:
        raise ValueError(f"sampler {mode!r} / fallback {fallback!r}: choose {SAMPLERS} / {FALLBACKS}")
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
    alloc = allocate(counts, n, gen)
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
            picks.append(_partners(first[: k // 2], members, g % (grid * grid), h, w, grid, fallback))
    return torch.cat(picks)


def _partners(points: torch.Tensor, members: torch.Tensor, cell: int, h: int, w: int, grid: int,
              fallback: str = "self") -> torch.Tensor:
    """The antithetic partner of each point: its mirror image through the cell's geometric centre,
    or, where that pixel is not a candidate, the point itself (``self``) or the candidate of
    the cell nearest to the mirror (``nearest``)."""
    r0, r1 = _bounds(cell // grid, h, grid)
    c0, c1 = _bounds(cell % grid, w, grid)
    image = points // (h * w)
    pr, pc = (points % (h * w)) // w, points % w
    mr, mc = (r0 + r1 - 1) - pr, (c0 + c1 - 1) - pc
    mirror = image * h * w + mr * w + mc
    present = torch.isin(mirror, members)
    if present.all():
        return mirror
    if fallback == "self":
        return torch.where(present, mirror, points)
    cr, cc = (members % (h * w)) // w, members % w
    d = (cr[None, :] - mr[:, None]) ** 2 + (cc[None, :] - mc[:, None]) ** 2
    nearest = members[d.argmin(dim=1)]
    return torch.where(present, mirror, nearest)


def _bounds(cell: int, size: int, grid: int) -> Tuple[int, int]:
    """[first, last + 1) of the pixels whose floor(grid * r / size) is ``cell``."""
    first = -(-cell * size // grid)
    last = -(-(cell + 1) * size // grid)
    return first, last
