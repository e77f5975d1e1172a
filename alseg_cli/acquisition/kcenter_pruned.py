"""Triangle-inequality pruning for exact k-center greedy.

Every point remembers its nearest centre a. When a centre c is added, a point p can only
move to c if ||c - p|| < ||p - a||, and ||c - p|| >= ||c - a|| - ||p - a||, so p cannot move
when ||c - a|| >= 2 sqrt(min_d[p]). The centre-to-centre distances cost O(k d) per pick and
the test O(N) scalars; only the points that pass it are read, and go through the brute
kernel's own update (its matrix-vector bound, then ((x - c)^2).sum where that cannot rule
them out), so ``min_d`` holds exactly what the brute-force update computes and the picks
are the same. The bound carries a margin for float32 rounding (at least 1e-3 relative,
more in high dimension), so a point the rounding could move is always recomputed.

Centre-to-centre distances come from one matrix-vector product over the centres, as a
rigorous lower bound (float32 dot-product error bound subtracted): a lower bound only prunes
less, never wrongly. Where pruning cannot help (isotropic data in high dimension: nearly
every point passes the test) a chunk whose candidates are many is updated with the brute
kernel's own pass over it, and after a pick where almost nothing was pruned the test is
skipped for the next 1, 2, 4, ... picks (exponential back-off, retried), so the pruned kernel
costs about what the brute one does there.
"""
from __future__ import annotations

DENSE = 0.25       # a chunk with more candidates than this fraction is updated densely
USELESS = 0.5      # a pick whose test kept more than this fraction of points saved little
MAX_BACKOFF = 64   # picks between retries of the test at most


class PrunedCentres:
    """Nearest-centre slots and centre vectors for the pruned update (torch, CPU or CUDA)."""

    def __init__(self, x, capacity: int, assign, centre_rows):
        import torch

        self.assign = assign                         # (N,) long: slot of each point's nearest centre
        self.centres = torch.empty((capacity, x.shape[1]), dtype=torch.float32, device=x.device)
        self.norms = torch.empty(capacity, dtype=torch.float32, device=x.device)   # ||centre||^2
        self.k = 0
        if centre_rows.numel():
            c = x.index_select(0, centre_rows).float()
            self._store(c, c.shape[0])
        self.tol = 2.0 * (x.shape[1] + 4) * 2.0 ** -24
        self.margin = 1.0 + max(1e-3, 2.0 * self.tol)
        self.read_rows = 0                           # rows of x recomputed, for benchmarks
        self.skip, self.backoff = 0, 1               # picks left without the test; next back-off

    def _store(self, c, n: int) -> None:
        self.centres[self.k:self.k + n] = c
        self.norms[self.k:self.k + n] = (c * c).sum(-1)
        self.k += n

    def _gaps(self, c, chunk: int):
        """A lower bound on ||centre_j - c|| for every centre j (one addmv per chunk of centres)."""
        import torch

        cn = float((c * c).sum())
        out = torch.empty(self.k, dtype=torch.float32, device=c.device)
        for s in range(0, self.k, chunk):
            e = min(self.k, s + chunk)
            sq = torch.addmv(self.norms[s:e], self.centres[s:e], c, alpha=-2.0) + cn
            err = self.tol * (self.norms[s:e] + cn) * 2.0       # |rounding| <= tol (|a| + |c|)^2
            out[s:e] = (sq - err).clamp_min(0).sqrt()
        return out

    def add(self, x, idx, min_d, chunk: int, update) -> None:
        """Add centre x[idx]; ``update(start, stop, c, subset)`` is the brute kernel's exact
        update of a chunk (``subset``: only those rows of it, None: all) and returns the mask
        of points whose min_d it lowered."""
        import torch

        c = x.index_select(0, idx)[0].float()
        test = self.k > 0 and self.skip == 0
        self.skip = max(0, self.skip - 1)
        gap = self._gaps(c, chunk) if test else None
        slot, kept = self.k, 0
        for start in range(0, x.shape[0], chunk):
            stop = min(x.shape[0], start + chunk)
            md = min_d[start:stop]
            if test:
                reach = 2.0 * self.margin * md.clamp_min(0).sqrt()
                cand_mask = (gap.index_select(0, self.assign[start:stop]) < reach) & (md >= 0)
                n_cand = int(cand_mask.sum())
                kept += n_cand
            else:
                cand_mask, n_cand = None, stop - start
            if n_cand == 0:
                continue
            if n_cand > DENSE * (stop - start):
                moved = update(start, stop, c, None)
                self.read_rows += stop - start
            else:
                moved = update(start, stop, c, torch.nonzero(cand_mask).flatten())
                self.read_rows += n_cand
            self.assign[start:stop][moved] = slot
        if test:      # back off while the test prunes (almost) nothing; reset once it does
            if kept > USELESS * x.shape[0]:
                self.skip, self.backoff = self.backoff, min(MAX_BACKOFF, 2 * self.backoff)
            else:
                self.backoff = 1
        self._store(c[None], 1)
        min_d.index_fill_(0, idx, -1.0)
