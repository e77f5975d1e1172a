"""How alike are the slices of a group? Paper section 3.2.1: the mean pairwise absolute
deviation of the normalised slice pixels, over the whole training set and within patient,
volume and adjacent-slice groups (the paper on ACDC: 0.217 / 0.159 / 0.166 / 0.115).

For a group of n slices with P pixels each, the deviation is the mean over its n(n-1)/2
pairs of the mean over pixels of |x_i - x_j|. It is computed exactly without the pairs:
per pixel, the values sorted ascending s_0..s_{n-1} give sum_{i<j} |s_j - s_i| =
sum_k (2k - n + 1) s_k, so a group costs a sort, O(P n log n), not O(P n^2). Groups are
weighted equally when averaged ("averaged over the dataset"); a group needs two slices.
Adjacent-slice groups are the consecutive pairs (k, k+1) of each volume, ordered by z.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import numpy as np

from ..atomic import check_writable, write_json
from ..manifest import make_manifest
from ..store import DatasetStore

GROUPS = ("dataset", "patient", "volume", "adjacent")


def mean_pairwise_deviation(x: np.ndarray) -> float:
    """(n, ...) slices -> mean over pairs i<j of mean over the other axes of |x_i - x_j|."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = x.shape[0]
    if n < 2:
        raise ValueError("a group needs at least two slices")
    s = np.sort(x, axis=0)
    coef = 2.0 * np.arange(n) - n + 1
    return float((coef @ s).sum() / (n * (n - 1) / 2) / x.shape[1])


def _groups(store, idx: np.ndarray) -> Dict[str, List[np.ndarray]]:
    pats, vols, z = store.patients[idx], store.volumes[idx], store.z[idx]
    by = {"dataset": [idx]}
    for name, keys in (("patient", pats), ("volume", vols)):
        by[name] = [idx[keys == k] for k in np.unique(keys)]
    adjacent = []
    for v in np.unique(vols):
        members = idx[vols == v][np.argsort(z[vols == v], kind="stable")]
        adjacent += [members[k:k + 2] for k in range(len(members) - 1)]
    by["adjacent"] = adjacent
    return {k: [g for g in groups if len(g) >= 2] for k, groups in by.items()}


def slice_diversity(store, split: str = "train", groups: Iterable[str] = GROUPS) -> Dict:
    """{group: {"deviation", "groups", "slices"}} over the slices of ``split`` (all channels)."""
    idx = store.indices(split)
    images = store.images(idx)
    pos = {int(i): k for k, i in enumerate(idx)}
    out = {}
    for name, members in _groups(store, idx).items():
        if name not in groups:
            continue
        values = [mean_pairwise_deviation(images[[pos[int(i)] for i in g]]) for g in members]
        out[name] = {"deviation": float(np.mean(values)) if values else None, "groups": len(values),
                     "slices": int(np.unique(np.concatenate(members)).size) if members else 0}
    return out


def run_stats(dataset, split: str = "train", out=None, force: bool = False) -> Dict:
    """`alseg stats`: the "stats" manifest (written to ``out`` too when given)."""
    if out is not None:
        check_writable(out, force)
    manifest = make_manifest("stats", {"split": split}, inputs={"dataset": dataset},
                             outputs={"stats": out} if out else {},
                             diversity=slice_diversity(DatasetStore(dataset), split))
    if out is not None:
        write_json(out, manifest, force=force)
    return manifest
