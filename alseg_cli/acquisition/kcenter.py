"""Exact, chunked k-center greedy (Sener & Savarese 2018; method.md section 3).

Greedy 2-approximation of the covering radius: labelled points are the initial centres;
each step adds the point farthest from its nearest centre. ``min_d`` (N,) holds every
point's squared distance to its nearest centre, so memory is O(N d): the N x d vectors
plus O(N) state plus one (chunk x d) temporary. No N x N or k x N matrix is ever built.

Exactness: every stored distance is ``((x - c) ** 2).sum`` in float32 (never the
cancellation-prone ||x||^2 - 2 x.c + ||c||^2), so picks match a float64 greedy up to
genuine ties. On CPU a matrix-vector product with a rigorous error bound first filters
the points a new centre can possibly capture; only those are recomputed exactly.
Ties break to the lowest index (``torch.argmax`` returns the first maximum on CPU and CUDA).
On CUDA the loop never synchronises with the host: the running argmax stays on the device
and picked indices are fetched in blocks.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from ..errors import AlsegError
from .kcenter_pruned import PrunedCentres

# Rows per chunk: on CPU the step is a matrix-vector product (no big temporary); on GPU
# large chunks amortise kernel launches.
CPU_CHUNK_BYTES = 1 << 24
GPU_CHUNK_BYTES = 1 << 28
FETCH_BLOCK = 256          # picks fetched from the GPU at a time
LABELED_BLOCK = 2048       # labelled centres per block when initialising min_d


def default_chunk_rows(dim: int, device_type: str) -> int:
    target = GPU_CHUNK_BYTES if device_type == "cuda" else CPU_CHUNK_BYTES
    return max(1, target // (4 * max(1, dim)))


def _as_tensor(vectors, device):
    import torch

    if isinstance(vectors, torch.Tensor):
        x = vectors.detach()
    else:
        arr = np.asarray(vectors)
        if arr.dtype == np.float64 or not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        x = x.to(torch.float32)
    return x.to(device)


def _check_finite(x, chunk: int) -> None:
    import torch

    for start in range(0, x.shape[0], chunk):
        if not bool(torch.isfinite(x[start:start + chunk]).all()):
            raise AlsegError("embeddings contain NaN or inf values; recompute or clean them")


def _sqdist_to(x, c, chunk: int, out):
    """out[i] = ||x_i - c||^2 in float32, chunk by chunk (c is float32, shape (d,))."""
    for start in range(0, x.shape[0], chunk):
        diff = x[start:start + chunk].float() - c
        out[start:start + chunk] = (diff * diff).sum(dim=1)
    return out


def _sq_norms(x, chunk: int):
    import torch

    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xs = x[start:start + chunk].float()
        out[start:start + chunk] = (xs * xs).sum(1)
    return out


def _update_filtered(x, c, min_d, xn_low, chunk: int, tol: float) -> None:
    """CPU step: min_d = min(min_d, ||x - c||^2), exact, at about the cost of one read of x.

    One fused matrix-vector product (addmv) gives every distance approximately, without a
    (chunk x d) temporary. Its float32 rounding error is below tol * (||x|| + ||c||)^2
    <= 2 tol (||x||^2 + ||c||^2) (worst-case dot-product bound), so a point can only be
    captured by the new centre if (1 - 2 tol)(||x||^2 + ||c||^2) - 2 x.c < min_d;
    ``xn_low`` holds (1 - 2 tol) ||x||^2. Only those candidates (a small fraction after the
    first picks) are recomputed exactly as ((x - c)^2).sum, so min_d holds exactly what
    the direct formula gives.
    """
    for start in range(0, x.shape[0], chunk):
        _dense_chunk(x, c, min_d, start, min(x.shape[0], start + chunk), xn_low, tol)


def _dense_chunk(x, c, min_d, start: int, stop: int, xn_low=None, tol: float = 0.0, subset=None):
    """Exact update of rows start:stop by the new centre c; returns the mask of rows it moved.
    CPU (``xn_low`` given): the matrix-vector bound explained in ``_update_filtered``; else
    every distance directly. ``subset``: only those rows of the chunk (positions in it; the
    pruned kernel's candidates)."""
    import torch

    xs, md = x[start:stop], min_d[start:stop]
    rows = torch.arange(stop - start, device=x.device) if subset is None else subset
    if subset is not None:
        xs = xs.index_select(0, subset)
    if xn_low is not None:
        cn_low = float((c * c).sum()) * (1.0 - 2.0 * tol)
        xn = xn_low[start:stop] if subset is None else xn_low[start:stop].index_select(0, subset)
        lower = torch.addmv(xn, xs.float(), c, alpha=-2.0)
        keep = torch.nonzero(lower + cn_low < md.index_select(0, rows)).flatten()
        rows, diff = rows.index_select(0, keep), xs.index_select(0, keep).float() - c
    else:
        diff = xs.float() - c
    exact = (diff * diff).sum(1)
    better = exact < md.index_select(0, rows)
    md.index_copy_(0, rows[better], exact[better])
    moved = torch.zeros(stop - start, dtype=torch.bool, device=x.device)
    moved[rows[better]] = True
    return moved


def _add_centre(x, idx, min_d, buf, chunk: int, xn=None, tol: float = 0.0) -> None:
    """Update nearest-centre distances with the new centre x[idx] (idx: 1-element tensor).

    On GPU every distance is computed directly (no data-dependent shapes, so no host sync);
    on CPU (``xn`` given) the filtered matrix-vector update reads x only once.
    """
    import torch

    c = x.index_select(0, idx)[0].float()
    if xn is not None:
        _update_filtered(x, c, min_d, xn, chunk, tol)
    else:
        _sqdist_to(x, c, chunk, buf)
        torch.minimum(min_d, buf, out=min_d)
    min_d.index_fill_(0, idx, -1.0)


def _mean(x, chunk: int):
    """Column means of x accumulated in float64, chunk by chunk."""
    import torch

    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        total += x[start:start + chunk].double().sum(0)
    return total / max(1, x.shape[0])


def init_min_distances(x, centres, chunk: int, nearest: bool = False):
    """Squared distance of every point to its nearest centre (centres: index tensor); with
    ``nearest``, also each point's nearest centre as a position in ``centres``.

    The nearest centre is found blockwise with matrix products (fast, float32) on data
    centred at its float64 mean: distances are translation-invariant, and centring keeps
    ||x||^2 - 2 x.c + ||c||^2 from cancelling when a common offset is large against the
    spread (10 + 0.05 N(0, 1) otherwise picks the wrong centre for 5 % of points). Each
    point's distance to its chosen centre is then recomputed exactly as ((x - c)^2).sum,
    so min_d carries no cancellation error.
    """
    import torch

    n = x.shape[0]
    dev = x.device
    min_d = torch.full((n,), float("inf"), dtype=torch.float32, device=dev)
    if centres.numel() == 0:
        return (min_d, torch.zeros(n, dtype=torch.long, device=dev)) if nearest else min_d
    best_val = torch.full((n,), float("inf"), dtype=torch.float32, device=dev)
    best_idx = torch.zeros(n, dtype=torch.long, device=dev)
    rows = max(1, min(chunk, (1 << 24) // LABELED_BLOCK))
    mu = _mean(x, chunk).float()
    for cs in range(0, centres.numel(), LABELED_BLOCK):
        cidx = centres[cs:cs + LABELED_BLOCK]
        c = x[cidx].float() - mu
        cn = (c * c).sum(1)
        for start in range(0, n, rows):
            xs = x[start:start + rows].float() - mu
            d = (xs * xs).sum(1, keepdim=True) - 2.0 * (xs @ c.T) + cn[None, :]
            val, arg = d.min(dim=1)
            better = val < best_val[start:start + rows]
            best_val[start:start + rows] = torch.where(better, val, best_val[start:start + rows])
            best_idx[start:start + rows] = torch.where(better, cidx[arg], best_idx[start:start + rows])
    for start in range(0, n, chunk):
        diff = x[start:start + chunk].float() - x[best_idx[start:start + chunk]].float()
        min_d[start:start + chunk] = (diff * diff).sum(1)
    if not nearest:
        return min_d
    slot = torch.empty(n, dtype=torch.long, device=dev)
    slot[centres] = torch.arange(centres.numel(), device=dev)
    return min_d, slot.index_select(0, best_idx)


PRUNE_MIN_POINTS = 20_000      # "auto" prunes on CPU from this many points on


def kcenter_greedy(vectors, budget: int, labeled: Optional[Sequence[int]] = None, seed: int = 0,
                   device="auto", chunk_size: Optional[int] = None, check: bool = True,
                   update: str = "auto", stats: Optional[dict] = None) -> list:
    """Pick ``budget`` new indices by k-center greedy; returns them in selection order.

    ``vectors`` (N, d) numpy array or torch tensor (float32/float16/bfloat16; float64 is
    cast to float32); ``labeled`` indices are the initial centres; with none, the first
    centre is drawn with ``np.random.default_rng(seed)`` and counts towards the budget.
    ``chunk_size`` rows per chunk (any value gives the same picks). ``update``: "pruned"
    (triangle-inequality pruning by each point's nearest centre, kcenter_pruned.py; the CPU
    default from PRUNE_MIN_POINTS points on, "filtered" below), "direct" (every distance as
    ((x - c)^2).sum; the GPU default), "filtered"
    (matrix-vector bound, exact recompute of candidates) or "auto"; all give the same picks.
    ``stats``: a dict that receives ``init_s`` and ``loop_s`` (synchronises the GPU to time) and
    ``covering_radius``, the largest distance from a point to its nearest centre after the picks.
    """
    import torch

    from ..device import resolve_device

    dev = resolve_device(device) if isinstance(device, (str, type(None))) else torch.device(device)
    x = _as_tensor(vectors, dev)
    if x.ndim != 2:
        raise AlsegError(f"embeddings must be a 2-D (N, d) array, got shape {tuple(x.shape)}")
    n = int(x.shape[0])
    chunk = int(chunk_size) if chunk_size else default_chunk_rows(int(x.shape[1]), dev.type)
    if chunk < 1:
        raise AlsegError(f"chunk_size must be positive, got {chunk_size}")
    if check:
        _check_finite(x, chunk)
    lab = np.unique(np.asarray([] if labeled is None else list(labeled), dtype=np.int64))
    if lab.size and (lab[0] < 0 or lab[-1] >= n):
        raise AlsegError(f"labelled index out of range 0..{n - 1}")
    budget = int(budget)
    if budget < 0 or budget > n - lab.size:
        raise AlsegError(f"budget {budget} is impossible: {n - lab.size} unlabelled points of {n}")
    if budget == 0:
        return []

    picks = torch.empty(budget, dtype=torch.long, device=dev)
    start_step = 0
    lab_t = torch.from_numpy(lab).to(dev)

    def clock():
        if stats is not None and dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    with torch.no_grad():
        t0 = clock()
        if update not in ("auto", "direct", "filtered", "pruned"):
            raise AlsegError(f"update {update!r}: choose auto, pruned, direct or filtered")
        # pruning pays from tens of thousands of points on (bench-select); below, its bookkeeping
        # costs more than it saves (0.8-0.95x the brute kernel at 5k-9k points)
        pruned = update == "pruned" or (update == "auto" and dev.type == "cpu" and n >= PRUNE_MIN_POINTS)
        filtered = update == "filtered" or (update in ("auto", "pruned") and dev.type == "cpu")
        tol = 2.0 * (x.shape[1] + 4) * 2.0 ** -24      # float32 dot-product bound, with margin
        xn = _sq_norms(x, chunk) * (1.0 - 2.0 * tol) if filtered else None
        index = None
        if pruned:
            min_d, assign = init_min_distances(x, lab_t, chunk, nearest=True)
            index = PrunedCentres(x, lab.size + budget, assign, lab_t)
        else:
            min_d = init_min_distances(x, lab_t, chunk)
        buf = torch.empty(n, dtype=torch.float32, device=dev)

        def add(idx):
            if index is None:
                _add_centre(x, idx, min_d, buf, chunk, xn, tol)
            else:
                index.add(x, idx, min_d, chunk,
                          lambda a, b, c, sub: _dense_chunk(x, c, min_d, a, b, xn, tol, sub))
        t1 = clock()
        if lab.size:
            min_d.index_fill_(0, lab_t, -1.0)   # centres never picked again, even among duplicates
        else:
            first = torch.tensor([int(np.random.default_rng(seed).integers(n))], device=dev)
            add(first)
            picks[0:1].copy_(first)
            start_step = 1
        for step in range(start_step, budget):
            idx = torch.argmax(min_d).view(1)   # stays on the device: no host sync per step
            picks[step:step + 1].copy_(idx)
            add(idx)
        if stats is not None:
            stats.update(init_s=t1 - t0, loop_s=clock() - t1,
                         rows_read=None if index is None else index.read_rows,
                         # delta of the coreset bound: the farthest point from its nearest centre
                         covering_radius=float(min_d.max().clamp_min(0).sqrt()))
    out = []
    for s in range(0, budget, FETCH_BLOCK):
        out.extend(int(i) for i in picks[s:s + FETCH_BLOCK].cpu().tolist())
    return out


def covering_radius(vectors, centres: Sequence[int], chunk_size: int = 4096) -> float:
    """max over points of the distance to the nearest centre (float64, for checks/benchmarks)."""
    x = np.asarray(vectors, dtype=np.float64)
    c = x[np.asarray(list(centres), dtype=np.int64)]
    xn = (x * x).sum(1)
    best = np.full(x.shape[0], np.inf)
    for start in range(0, c.shape[0], 256):
        cc = c[start:start + 256]
        cn = (cc * cc).sum(1)
        for r in range(0, x.shape[0], chunk_size):
            d = xn[r:r + chunk_size, None] - 2.0 * (x[r:r + chunk_size] @ cc.T) + cn[None, :]
            best[r:r + chunk_size] = np.minimum(best[r:r + chunk_size], d.min(1))
    return float(np.sqrt(max(0.0, best.max())))
