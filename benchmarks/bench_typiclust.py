"""TypiClust fidelity on real vectors: alseg against a literal official-algorithm implementation.

    python benchmarks/bench_typiclust.py [--acdc ../shared/data/acdc] [--budgets 14,73,145] [--seeds 0,1,2]

Vectors: every ACDC slice (1,454) at 128 px, embedded with ``pixels`` (32 x 32), no labelled
set, K = |L| + budget clusters as the method defines. For each budget and seed:
- same clusters: alseg's ``typiclust_pick`` against the official ``select_samples`` written
  out literally (round-robin, MIN_CLUSTER_SIZE 5, K_NN 20), on alseg's k-means clusters,
  with the official squared-L2 typicality and with the paper's L2; overlap of the picks.
- end to end: alseg's whole selection against the official pipeline (scikit-learn KMeans up
  to 50 clusters, MiniBatchKMeans above, squared L2), each with its own clustering.
- noise floor: the official pipeline against itself with the next seed's clustering.
- k-means: alseg's inertia over the median of scikit-learn ``KMeans(n_init=1)`` over 5 seeds.
Prints a Markdown table on stdout; progress on stderr.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from alseg_cli import api
from alseg_cli.acquisition.learned import kmeans, typiclust_pick
from alseg_cli.store import EmbeddingsStore


def official_select(features, labels, budget, squared=True):
    """deep-al pycls/al/typiclust.py select_samples with an empty labelled set, literally."""
    labels = labels.copy()
    ids, sizes = np.unique(labels, return_counts=True)
    rows = sorted(((int(c), int(n)) for c, n in zip(ids, sizes) if n > 5), key=lambda r: -r[1])
    picks = []
    for i in range(budget):
        indices = (labels == rows[i % len(rows)][0]).nonzero()[0]
        feats = features[indices]
        k = min(20, len(indices) // 2)
        d = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
        d = d if squared else np.sqrt(d)
        with np.errstate(invalid="ignore"):
            typ = 1 / (np.sort(d, axis=1)[:, 1:k + 1].mean(axis=1) + 1e-5)
        idx = indices[np.nanargmax(typ) if k else 0]
        picks.append(int(idx))
        labels[idx] = -1
    return picks


def official_kmeans(x, k, seed):
    from sklearn.cluster import KMeans, MiniBatchKMeans

    km = KMeans(n_clusters=k, random_state=seed) if k <= 50 else \
        MiniBatchKMeans(n_clusters=k, batch_size=5000, random_state=seed)
    return km.fit(x).labels_


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acdc", default="../shared/data/acdc")
    ap.add_argument("--budgets", default="14,73,145")
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    if not Path(a.acdc).is_dir():
        sys.exit(f"bench_typiclust: {a.acdc} not found")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        api.prep(a.acdc, Path(tmp) / "d.zarr", size=128)
        api.embed(Path(tmp) / "d.zarr", Path(tmp) / "e.zarr", encoder="pixels", progress=False)
        x = EmbeddingsStore(Path(tmp) / "e.zarr").vectors().astype(np.float64)
    from sklearn.cluster import KMeans

    print("| K = budget | same clusters, sq. L2 | same clusters, L2 | end to end (official vs alseg) "
          "| official vs official, next seed | k-means inertia / sklearn n_init=1 |")
    print("|---|---|---|---|---|---|")
    for budget in map(int, a.budgets.split(",")):
        same_sq, same_l2, e2e, floor, ratio = [], [], [], [], []
        for seed in map(int, a.seeds.split(",")):
            labels, _, inertia = kmeans(torch.from_numpy(x), budget, seed)
            ours_sq = typiclust_pick(torch.from_numpy(x), labels, 0, budget, squared=True)
            ours_l2 = typiclust_pick(torch.from_numpy(x), labels, 0, budget)
            same_sq.append(len(set(ours_sq) & set(official_select(x, labels, budget))) / budget)
            same_l2.append(len(set(ours_l2) & set(official_select(x, labels, budget, squared=False))) / budget)
            theirs = official_select(x, official_kmeans(x, budget, seed), budget)
            e2e.append(len(set(ours_l2) & set(theirs)) / budget)
            again = official_select(x, official_kmeans(x, budget, seed + 1), budget)
            floor.append(len(set(again) & set(theirs)) / budget)
            ref = np.median([KMeans(n_clusters=budget, n_init=1, random_state=s).fit(x).inertia_ for s in range(5)])
            ratio.append(inertia / ref)
            print(f"K={budget} seed {seed}: same {same_sq[-1]:.2f}/{same_l2[-1]:.2f} e2e {e2e[-1]:.2f} "
                  f"inertia ratio {ratio[-1]:.3f}", file=sys.stderr, flush=True)
        print(f"| {budget} | {np.mean(same_sq):.0%} | {np.mean(same_l2):.0%} | {np.mean(e2e):.0%} "
              f"| {np.mean(floor):.0%} | {np.median(ratio):.3f} |")


if __name__ == "__main__":
    main()
