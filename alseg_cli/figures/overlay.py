"""Figure 3: predictions against ground truth for chosen test slices, across models.

Each panel is the slice with, per foreground class, the pixels where prediction and mask
agree in that class's colour, and the pixels where they disagree about that class (predicted
but not drawn, or drawn but not predicted) in red. Rows are slices, columns are models (for a
loop run: one per method and budget).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import AlsegError
from ..segmentation.predict import predict_batches, prediction_nets
from ..store import DatasetStore
from .common import DISAGREE, LABEL_PALETTE, class_colour, grey, pyplot, save_png


def agreement_rgb(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, classes: Sequence[int],
                  alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3): the grey slice, agreement per class in its colour, disagreement in red."""
    g = grey(image)
    rgb = np.repeat(g[..., None], 3, axis=2)
    for c in classes:
        agree = (pred == c) & (truth == c)
        differ = (pred == c) ^ (truth == c)
        for mask, colour in ((agree, class_colour(c)), (differ, DISAGREE)):
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    return rgb


def pick_slices(store: DatasetStore, split: str, n: int) -> List[int]:
    """``n`` slices of ``split`` with the most foreground, from as many volumes as possible."""
    idx = store.indices(split)
    idx = idx[store.available("masks")[idx]]
    if idx.size == 0:
        raise AlsegError(f"{store.path}: no slice of split {split!r} has a mask to compare with")
    fg = (store.masks(idx) > 0).reshape(idx.size, -1).sum(1)
    order = idx[np.argsort(-fg, kind="stable")]
    chosen, seen = [], set()
    for i in order:                              # the largest slice of each volume first
        if store.volumes[i] not in seen:
            chosen.append(int(i))
            seen.add(store.volumes[i])
        if len(chosen) == n:
            return chosen
    return (chosen + [int(i) for i in order if int(i) not in chosen])[:n]


def loop_models(run_dir, methods: Sequence[str], budgets: Sequence[str], seed: int) -> Dict[str, Path]:
    """{"method budget%": model dir} of a loop run; a missing round is an error naming it."""
    out = {}
    for m in methods:
        for b in budgets:
            d = Path(run_dir) / m / f"seed{seed}" / f"round{str(b).rstrip('%')}" / "model"
            if not (d / "manifest.json").exists():
                raise AlsegError(f"{d}: no finished model (method {m}, budget {b}, seed {seed})")
            out[f"{m} {str(b).rstrip('%')}%"] = d
    return out


def overlay_figure(dataset, models: Dict[str, Path], out, slices: Optional[Sequence[str]] = None,
                   n: int = 4, split: str = "test", device: str = "cpu", force: bool = False) -> Dict:
    """Write the grid to ``out`` (PNG); returns what it drew."""
    if not models:
        raise AlsegError("no models to draw: give --model DIR (several) or --run RUN_DIR --methods ...")
    store = DatasetStore(dataset)
    idx = store.ids_to_indices(slices) if slices else np.asarray(pick_slices(store, split, n))
    have = store.available("masks")
    lacking = [str(store.slice_ids[i]) for i in idx if not have[i]]
    if lacking:
        raise AlsegError(f"slice {lacking[0]} has no mask to compare the prediction with")
    truth = store.masks(idx)
    images = store.images(idx)
    classes = list(range(1, store.num_classes))
    preds = {}
    for name, d in models.items():
        nets = prediction_nets([d], store, "softmax", device)
        preds[name] = np.concatenate([p[0].argmax(1).numpy() for _, p in predict_batches(nets, store, idx)])
    plt = pyplot()
    cols = len(models) + 1
    fig, axes = plt.subplots(len(idx), cols, figsize=(2.2 * cols, 2.2 * len(idx) + 0.6), squeeze=False)
    for r, i in enumerate(idx):
        axes[r, 0].imshow(agreement_rgb(images[r], truth[r], truth[r], classes))
        axes[r, 0].set_ylabel(str(store.slice_ids[i]), fontsize=7)
        for c, name in enumerate(models, start=1):
            axes[r, c].imshow(agreement_rgb(images[r], preds[name][r], truth[r], classes))
        for c, title in enumerate(["ground truth", *models]):
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    names = store.attrs.get("classes") or {}
    handles = [plt.Rectangle((0, 0), 1, 1, color=class_colour(c)) for c in classes] + \
        [plt.Rectangle((0, 0), 1, 1, color=DISAGREE)]
    fig.legend(handles, [f"{names.get(str(c), c)} agrees" for c in classes] + ["disagrees"],
               loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    save_png(fig, out, force)
    return {"png": str(out), "slices": [str(store.slice_ids[i]) for i in idx], "models": {k: str(v) for k, v in models.items()}}


def label_rgb(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3): the grey slice with each foreground label blended in its LABEL_PALETTE colour
    (the colours of labels.txt, so the picture matches what ITK-SNAP shows)."""
    rgb = np.repeat(grey(image)[..., None], 3, axis=2)
    palette = np.asarray(LABEL_PALETTE, np.float64) / 255
    fg = labels > 0
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * palette[labels[fg] % len(palette)]
    return rgb


def label_sheet(images: np.ndarray, labels: np.ndarray, titles: Sequence[str], names: Dict[int, str], out,
                force: bool = False) -> Path:
    """One row of slices (C, H, W each) with their label maps over them, and a class legend."""
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
    for ax, image, lab, title in zip(axes[0], images, labels, titles):
        ax.imshow(label_rgb(image, lab))
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(LABEL_PALETTE[c % len(LABEL_PALETTE)]) / 255)
               for c in names if c > 0]
    fig.legend(handles, [names[c] for c in names if c > 0], loc="lower center", ncol=max(1, len(handles)),
               fontsize=7, frameon=False)
    return save_png(fig, out, force)
