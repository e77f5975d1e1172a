"""Group batch sampler (method.md section 2, paper appendix C, algorithm 1).

Random batches almost never hold two members of one group, so each slice leads a tuple
[slice, adjacent slice, another slice of its volume, a slice of its patient from another
volume], keeping only the members the enabled groups need, and batches are filled with
tuples of distinct patients (so the denominator of eq. 4 is not emptied by same-patient
rows). Tuples are rebuilt every epoch from a new seed.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

MEMBER_ORDER = ("slice", "volume", "patient")   # adjacent, same volume, same patient


def tuple_size(groups) -> int:
    return 1 + sum(1 for g in MEMBER_ORDER if g in set(groups))


def default_batch_size(groups) -> int:
    """8 slices for one or three groups (tuples of 2 or 4), 9 for two (tuples of 3)."""
    return 9 if tuple_size(groups) == 3 else 8


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values).astype(str), return_inverse=True)[1].reshape(-1)


def _build_tuples(patients, volumes, z, groups, rng: np.random.Generator) -> List[List[int]]:
    pat, vol = _codes(patients), _codes(volumes)
    z = np.asarray(z)
    n = len(pat)
    by_volume: Dict[int, np.ndarray] = {}
    for v in np.unique(vol):
        idx = np.flatnonzero(vol == v)
        by_volume[int(v)] = idx[np.argsort(z[idx], kind="stable")]   # ordered base -> apex
    position = np.empty(n, dtype=np.int64)
    for idx in by_volume.values():
        position[idx] = np.arange(len(idx))
    volumes_of = defaultdict(list)
    for v, idx in by_volume.items():
        volumes_of[int(pat[idx[0]])].append(v)

    def other_in(idx: np.ndarray, exclude: int) -> int:
        # a random slice of ``idx`` other than ``exclude``; a one-slice volume repeats it
        choices = idx[idx != exclude]
        return int(exclude if choices.size == 0 else choices[rng.integers(choices.size)])

    tuples = []
    for s in range(n):
        members = [s]
        idx = by_volume[int(vol[s])]
        k = position[s]
        if "slice" in groups:
            near = [j for j in (k - 1, k + 1) if 0 <= j < len(idx)]
            members.append(int(idx[near[rng.integers(len(near))]]) if near else s)
        if "volume" in groups:
            members.append(other_in(idx, s))
        if "patient" in groups:
            others = [v for v in volumes_of[int(pat[s])] if v != vol[s]]
            if others:   # a slice of the same patient from another volume
                pool = by_volume[others[rng.integers(len(others))]]
                members.append(int(pool[rng.integers(pool.size)]))
            else:        # one-volume patient: draw from the same volume
                members.append(other_in(idx, s))
        tuples.append(members)
    return tuples


def group_batches(patients: Sequence, volumes: Sequence, z: Sequence, groups,
                  batch_size: int, seed: int) -> List[List[int]]:
    """One epoch of batches (lists of slice indices, tuple after tuple).

    Every slice leads exactly one tuple; members are ordered (slice, adjacent, same
    volume, same patient), enabled groups only; the tuples of a batch come from distinct
    patients; a batch holds ``batch_size // tuple_size`` tuples (fewer at the end when
    too few patients remain). With no groups, plain shuffled batches of ``batch_size``.
    """
    groups = set(groups or ())
    unknown = groups - set(MEMBER_ORDER)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)}; use {MEMBER_ORDER}")
    n = len(patients)
    if not (len(volumes) == len(z) == n):
        raise ValueError("patients, volumes and z must have one entry per slice")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    if not groups:
        order = rng.permutation(n)
        return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    t = tuple_size(groups)
    per_batch = max(1, batch_size // t)
    tuples = _build_tuples(patients, volumes, z, groups, rng)
    pat = _codes(patients)
    queues = defaultdict(list)
    for s in rng.permutation(n):
        queues[int(pat[s])].append(tuples[s])
    batches = []
    while queues:
        # take from the patients with the most tuples left (random tie-break): this keeps
        # batches full for as long as possible instead of stranding one big patient.
        keys = np.array(list(queues))
        left = np.array([len(queues[k]) for k in keys])
        order = np.lexsort((rng.random(len(keys)), -left))[:per_batch]
        batch = []
        for k in keys[order]:
            batch += queues[int(k)].pop()
            if not queues[int(k)]:
                del queues[int(k)]
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def position_partition(positions, lengths, S: int) -> np.ndarray:
    """Peng's slice-position meta-label: part = floor(S * k / Z) for the k-th of Z slices of a
    volume (0-based, base -> apex), so the S parts of a volume differ in size by at most 1."""
    k, Z = np.asarray(positions, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    if S < 1:
        raise ValueError(f"S must be >= 1, got {S}")
    return (S * k) // np.maximum(Z, 1)


def partition_batches(volumes: Sequence, partition: Sequence, scans_per_batch: int, seed: int,
                      batches: int) -> List[List[int]]:
    """``batches`` batches of Peng's position sampler: each takes ``scans_per_batch`` distinct
    volumes (drawn without replacement, a new permutation when the volumes run out) and one
    random slice from every non-empty partition of each."""
    vol, part = _codes(volumes), np.asarray(partition)
    rng = np.random.default_rng(seed)
    cells: Dict[int, List[np.ndarray]] = {}
    for v in np.unique(vol):
        idx = np.flatnonzero(vol == v)
        cells[int(v)] = [idx[part[idx] == p] for p in np.unique(part[idx])]
    names = np.array(sorted(cells))
    m = max(1, min(int(scans_per_batch), names.size))
    order: List[int] = []
    out = []
    for _ in range(int(batches)):
        if len(order) < m:
            order += rng.permutation(names).tolist()
        take, order = order[:m], order[m:]
        if len(set(take)) < m:     # a permutation's tail met the next one's head: redraw distinct
            take = rng.choice(names, m, replace=False).tolist()
        out.append([int(c[rng.integers(c.size)]) for v in take for c in cells[int(v)]])
    return out
