"""Figure 4: a 2-D map (t-SNE) of embeddings stores, coloured by k-means cluster, patient or
volume, with a selection's slices marked; several stores side by side (NT-Xent vs GCL).

The map is of the train split (what selection chooses from), at most ``max_points`` slices
(a seeded subsample that keeps every selected slice). t-SNE and k-means are scikit-learn's,
seeded, so a rerun draws the same picture.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from ..errors import AlsegError
from ..store import DatasetStore, EmbeddingsStore
from .common import pyplot, save_png

COLOUR_BY = ("cluster", "patient", "volume")


def _selected_ids(selection) -> set:
    if selection is None:
        return set()
    from ..segmentation.labels import read_label_ids
    return set(read_label_ids(str(selection), None))


def embedding_map(stores: Sequence, out, dataset=None, colour: str = "cluster", clusters: int = 10,
                  selection=None, max_points: int = 3000, seed: int = 0, perplexity: float = 30.0,
                  force: bool = False) -> Dict:
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE

    if colour not in COLOUR_BY:
        raise AlsegError(f"--colour {colour!r}: choose {', '.join(COLOUR_BY)}")
    if not stores:
        raise AlsegError("give one or more embeddings stores")
    if clusters < 2:
        raise AlsegError(f"--clusters {clusters}: need at least 2")
    embs = [EmbeddingsStore(s) for s in stores]
    data = DatasetStore(dataset or embs[0].attrs.get("dataset"))
    picked = _selected_ids(selection)
    train = data.slice_ids[data.indices("train")]
    rng = np.random.default_rng(seed)
    keep = np.asarray(sorted(set(rng.permutation(train.size)[:max_points].tolist())
                             | {k for k, s in enumerate(train) if s in picked}))
    ids = train[keep]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(embs), figsize=(5 * len(embs), 4.8), squeeze=False)
    drawn = []
    for ax, emb, path in zip(axes[0], embs, stores):
        pos = {s: i for i, s in enumerate(emb.slice_ids)}
        missing = [s for s in ids if s not in pos]
        if missing:
            raise AlsegError(f"{path}: no vector for slice {missing[0]}; embed the same dataset")
        x = emb.vectors()[[pos[s] for s in ids]].astype(np.float64)
        if colour == "cluster":
            groups = KMeans(n_clusters=min(clusters, len(ids)), n_init=3, random_state=seed).fit(x).labels_
        else:
            values = (data.patients if colour == "patient" else data.volumes)[data.ids_to_indices(ids)]
            groups = np.unique(values, return_inverse=True)[1]
        xy = TSNE(n_components=2, perplexity=min(perplexity, max(2.0, (len(ids) - 1) / 3)), init="pca",
                  random_state=seed).fit_transform(x)
        ax.scatter(xy[:, 0], xy[:, 1], c=groups, cmap="tab20", s=6, alpha=0.8, linewidths=0)
        sel = np.asarray([s in picked for s in ids])
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], marker="x", c="black", s=28, linewidths=1.2, label="selected")
            ax.legend(loc="upper right", fontsize=8)
        encoder = emb.attrs.get("encoder") or {}
        kind = encoder.get("kind", "") if isinstance(encoder, dict) else str(encoder)
        ax.set_title(f"{path}\n{kind} ({colour}, {len(ids)} slices)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        drawn.append({"store": str(path), "points": int(len(ids)), "selected": int(sel.sum())})
    save_png(fig, out, force)
    return {"png": str(out), "colour": colour, "maps": drawn}
