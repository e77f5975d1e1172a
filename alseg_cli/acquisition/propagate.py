"""k-NN label propagation: Belharbi et al.'s "Label_prop" weak annotator (seed-methods.md section 3).

After the oracle's pick, an unlabelled training slice u joins the pseudo-labelled set P when
some labelled slice is among u's k nearest neighbours (ranked among all other training slices
of u's group, by the paper's histogram Jensen-Shannon distance or by an embeddings store).
P gets pseudo-masks from the last round's model and trains with a weight lambda (train-seg
--pseudo); it costs no oracle time, so budgets never count it. The rule is computed chunk by
chunk of unlabelled rows: memory O(chunk x N), never an N x N matrix.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from ..atomic import write_json
from ..errors import AlsegError
from ..manifest import make_manifest
from ..store import DatasetStore, EmbeddingsStore, write_pseudo

METRICS = ("hist-jsd", "embedding")
GROUP_BY = ("none", "volume", "partition")
# share: None = training batches uniform over labelled + pseudo slices (Belharbi's code); a
# fraction = that share of every batch pseudo, the rest labelled (train_seg's pseudo_share)
DEFAULTS = {"k": 10, "metric": "hist-jsd", "group_by": "none", "weight": 0.1, "passes": 1, "bins": 256,
            "share": None}


def intensity_histograms(images: np.ndarray, bins: int = 256, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(N, C, bins) normalised intensity histogram of every channel of every slice on [lo, hi]
    (values outside are clipped into the end bins)."""
    x = np.clip((np.asarray(images, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    n, c = x.shape[:2]
    idx = np.minimum((x * bins).astype(np.int64), bins - 1).reshape(n * c, -1)
    idx += (np.arange(n * c) * bins)[:, None]              # one bincount over every (slice, channel)
    out = np.bincount(idx.ravel(), minlength=n * c * bins).reshape(n, c, bins).astype(np.float64)
    return out / out.sum(axis=2, keepdims=True)


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (natural log, in [0, ln 2]) between histograms on the last axis,
    broadcast over the others; summed over channels by the caller."""
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * (torch.log(a.clamp(min=1e-300)) - torch.log(b.clamp(min=1e-300))),
                           torch.zeros((), dtype=a.dtype)).sum(-1)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def hist_jsd_distance(hists: torch.Tensor) -> Callable[[np.ndarray], torch.Tensor]:
    """rows -> (len(rows), N): the sum over channels of the JSD of their histograms to every slice's."""
    def rows_to_all(rows: np.ndarray) -> torch.Tensor:
        a = hists[torch.as_tensor(rows)]                      # (c, C, B)
        return jsd(a[:, None], hists[None]).sum(-1)           # (c, N)
    return rows_to_all


def l2_distance(vectors: torch.Tensor) -> Callable[[np.ndarray], torch.Tensor]:
    def rows_to_all(rows: np.ndarray) -> torch.Tensor:
        return torch.cdist(vectors[torch.as_tensor(rows)], vectors)
    return rows_to_all


def propagation_mask(distance: Callable[[np.ndarray], torch.Tensor], n: int, unlabelled: np.ndarray,
                     labelled: np.ndarray, k: int, groups: Optional[np.ndarray] = None,
                     chunk_rows: int = 256) -> np.ndarray:
    """For each row u of ``unlabelled`` (indices into the n rows), True when some ``labelled``
    row is among u's k nearest other rows of u's group: fewer than k rows are strictly closer
    to u than its nearest labelled row (k is counted per unlabelled row, as the paper's
    figure 2). ``distance(rows)`` gives (len(rows), n) distances to every row; rows outside
    the training set may be left out by the caller (n counts only the rows that rank)."""
    if k < 1:
        raise AlsegError(f"k-NN propagation: k must be at least 1, got {k}")
    unlabelled, labelled = np.asarray(unlabelled, dtype=np.int64), np.asarray(labelled, dtype=np.int64)
    out = np.zeros(unlabelled.size, dtype=bool)
    if labelled.size == 0 or unlabelled.size == 0:
        return out
    groups = None if groups is None else torch.as_tensor(np.unique(np.asarray(groups).astype(str),
                                                                   return_inverse=True)[1].reshape(-1))
    lab = torch.as_tensor(labelled)
    for start in range(0, unlabelled.size, chunk_rows):
        rows = unlabelled[start:start + chunk_rows]
        d = distance(rows).double().clone()                             # (c, n)
        d[torch.arange(rows.size), torch.as_tensor(rows)] = float("inf")  # u is not its own neighbour
        if groups is not None:
            d[groups[torch.as_tensor(rows)][:, None] != groups[None, :]] = float("inf")
        nearest_lab = d[:, lab].min(dim=1).values
        closer = (d < nearest_lab[:, None]).sum(dim=1)
        out[start:start + rows.size] = (torch.isfinite(nearest_lab) & (closer < k)).numpy()
    return out


def slice_groups(store: DatasetStore, rows: np.ndarray, group_by: str, partitions: int = 3) -> Optional[np.ndarray]:
    """The "same class" stand-in for slices: none, the volume, or Peng's slice-position partition."""
    if group_by == "none":
        return None
    vols = store.volumes[rows]
    if group_by == "volume":
        return vols
    from ..encoders.sampler import position_partition
    pos, lengths = np.empty(rows.size, dtype=np.int64), np.empty(rows.size, dtype=np.int64)
    for v in np.unique(vols):
        sel = np.flatnonzero(vols == v)
        pos[sel[np.argsort(store.z[rows[sel]], kind="stable")]] = np.arange(sel.size)
        lengths[sel] = sel.size
    return position_partition(pos, lengths, partitions)


def pseudo_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> Optional[float]:
    """Mean over foreground classes of the Dice pooled over the pseudo-labelled slices."""
    scores = []
    for c in range(1, num_classes):
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        if denom:
            scores.append(2.0 * (p & t).sum() / denom)
    return float(np.mean(scores)) if scores else None


def propagate(dataset, labeled, model, out, k: int = DEFAULTS["k"], metric: str = DEFAULTS["metric"],
              embeddings=None, group_by: str = DEFAULTS["group_by"], round_index: int = 0, previous=None,
              bins: int = DEFAULTS["bins"], train_split: str = "train", device: str = "auto",
              force: bool = True) -> Dict:
    """The propagation set around the labelled slices of the selection manifest ``labeled``,
    pseudo-labelled by ``model`` (argmax of its softmax on the un-augmented slices), written to
    ``out`` (OUT/pseudo.zarr and OUT/pseudo.json). ``previous``: the last round's pseudo.json,
    for the round each slice first joined. Returns the manifest."""
    from ..segmentation.labels import resolve_labels
    from ..segmentation.predict import iter_predictions

    if metric not in METRICS:
        raise AlsegError(f"k-NN propagation metric {metric!r}: choose {', '.join(METRICS)}")
    if group_by not in GROUP_BY:
        raise AlsegError(f"k-NN propagation group_by {group_by!r}: choose {', '.join(GROUP_BY)}")
    store = DatasetStore(dataset)
    train = store.indices(train_split)
    lab_idx = resolve_labels(labeled, store, train_split)
    is_lab = np.isin(train, lab_idx)
    if metric == "embedding":
        if embeddings is None:
            raise AlsegError("k-NN propagation with metric 'embedding' needs an embeddings store")
        emb = EmbeddingsStore(embeddings)
        pos = {s: i for i, s in enumerate(emb.slice_ids.tolist())}
        missing = [s for s in store.slice_ids[train] if s not in pos]
        if missing:
            raise AlsegError(f"{embeddings}: no vector for slice {missing[0]} (embed the dataset store first)")
        vectors = torch.from_numpy(emb.vectors()[[pos[s] for s in store.slice_ids[train]]].astype(np.float32))
        distance = l2_distance(vectors)
    else:
        images = store.images(train)
        hists = torch.from_numpy(intensity_histograms(images, bins, float(images.min()), float(images.max())))
        distance = hist_jsd_distance(hists)
    rows = np.arange(train.size)
    chosen = propagation_mask(distance, train.size, rows[~is_lab], rows[is_lab], int(k),
                              slice_groups(store, train, group_by), chunk_rows=max(1, (1 << 22) // max(1, train.size * bins)))
    members = train[~is_lab][chosen]
    masks = np.zeros((members.size, store.size, store.size), dtype=np.uint8)
    if members.size:
        at = {int(i): j for j, i in enumerate(members)}
        for batch, probs in iter_predictions([model], store, members, mode="softmax", device=device):
            masks[[at[int(i)] for i in batch]] = probs[0].argmax(1).numpy().astype(np.uint8)
    ids = store.slice_ids[members].tolist()
    joined = json.loads(Path(previous).read_text()).get("pseudo_labeled", {}) if previous else {}
    rounds = {s: int(joined.get(s, round_index)) for s in ids}
    truth = store.available("masks")[members]
    dice = pseudo_dice(masks[truth], store.masks(members[truth]), store.num_classes) if truth.any() else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"k": int(k), "metric": metric, "group_by": group_by, "bins": int(bins) if metric == "hist-jsd" else None}
    write_pseudo(out / "pseudo.zarr", masks, ids, {"rounds": rounds, "model": str(model), **settings}, force=force)
    manifest = make_manifest("pseudo-labels", args={**settings, "round": int(round_index)},
                             inputs={"dataset": store.path, "labeled": labeled, "model": model,
                                     **({"embeddings": embeddings} if embeddings else {})},
                             outputs={"pseudo": out / "pseudo.zarr"},
                             count=int(members.size), labelled=int(lab_idx.size), pool=int((~is_lab).sum()),
                             pseudo_dice=dice, pseudo_dice_slices=int(truth.sum()), pseudo_labeled=rounds)
    write_json(out / "pseudo.json", manifest, force=True)
    return manifest
