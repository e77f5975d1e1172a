"""Selection by whole volumes (the paper's figure 2 baseline: random 3D volumes; k-center over
mean-pooled volume embeddings as an extra baseline).

The budget is still a count of slices (an annotation fraction of the fully labelled training
set): volumes are taken in the method's order while the labelled slices stay within it, and
at least one volume per round, so a round may add fewer slices than asked (never more, except
that first volume); the manifest records what was added. Only volumes with no labelled slice
are candidates.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import AlsegError
from .kcenter import kcenter_greedy
from .methods import SelectionContext

VOLUME_METHODS = ("random", "coreset", "gcl-coreset")


def volume_order(method: str, ctx: SelectionContext, candidates: List[str], labelled: List[str]) -> List[str]:
    """Candidate volumes in the order the method takes them."""
    if method == "random":
        return [candidates[i] for i in np.random.default_rng(ctx.seed).permutation(len(candidates))]
    vectors = ctx.need_vectors(method)
    names = candidates + labelled
    rows = np.concatenate([ctx.pool, ctx.labeled])
    codes = {v: k for k, v in enumerate(names)}
    group = np.asarray([codes[v] for v in ctx.store.volumes[rows]])
    sums = np.zeros((len(names), vectors.shape[1]))
    np.add.at(sums, group, vectors[rows].astype(np.float64))          # one pass over the slices
    means = (sums / np.bincount(group, minlength=len(names))[:, None]).astype(np.float32)
    order = kcenter_greedy(means, len(candidates), labeled=list(range(len(candidates), len(names))),
                           seed=ctx.seed, device=ctx.device)
    return [names[i] for i in order]


def select_volumes(method: str, ctx: SelectionContext, total: int) -> List[int]:
    """Slice indices of the chosen volumes (whole volumes, z order)."""
    if method not in VOLUME_METHODS:
        raise AlsegError(f"--unit volume works with {', '.join(VOLUME_METHODS)}, not {method!r}")
    store = ctx.store
    pool_vols = set(store.volumes[ctx.pool].tolist())
    touched = set(store.volumes[ctx.labeled].tolist())
    candidates = sorted(pool_vols - touched)
    if not candidates:
        raise AlsegError("--unit volume: every train volume already has labelled slices")
    have = int(ctx.labeled.size)
    picks: List[int] = []
    for v in volume_order(method, ctx, candidates, sorted(touched)):
        idx = store.volume_slices(v)
        if picks and have + len(picks) + idx.size > total:
            continue                        # a smaller volume later may still fit
        picks.extend(int(i) for i in idx)
        if have + len(picks) >= total:
            break
    return picks
