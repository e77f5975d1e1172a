"""`evaluate`: per-volume, per-class 3D Dice and HD95 at each volume's native resolution.

Every slice of a volume is predicted at the working size (best member, un-augmented),
the label map is resized back to the native in-plane size (nearest), stacked along z and
compared with the native mask. Reported: per volume and class, per class (mean over
volumes) and the mean over classes of those means. Empty cases: Dice 1 when a class is
absent from both prediction and mask, 0 when absent from one; HD95 is NaN whenever either
is empty and NaN values are left out of the means (``hd95_valid`` counts the rest).
``hd95`` is the paper's (medpy's) pooled 95th percentile of both surfaces' distances;
``hd95_max`` the larger directed 95th percentile (MONAI's), which runs higher.
HD95 is in mm with the volume's spacing when known, else in pixels (``hd95_unit``).
A class absent from every reference mask of the evaluated split is flagged
(``absent_classes``, ``per_class[...]["absent"]``) and left out of the means: its Dice
would be 1 by the empty-case rule whatever the model does.
``per_slice`` holds each slice's 2D Dice at native size (same empty-case rules), which
``alseg bootstrap --unit slice`` resamples for test sets with few volumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..atomic import atomic_path, check_writable, write_json
from ..data.geometry import to_native
from ..device import resolve_device
from ..errors import AlsegError
from ..manifest import make_manifest
from ..metrics.dice import dice_per_class
from ..metrics.hd95 import hd95_per_class
from ..progress import as_reporter
from ..store import DatasetStore
from .labels import check_compatible
from .predict import predict_batches, prediction_nets, read_model_dir


def to_source_orientation(volume_zhw: np.ndarray, slice_axis: int) -> np.ndarray:
    """Stores keep the slice axis first (Z, H, W); put it back where the source file had it."""
    return np.moveaxis(volume_zhw, 0, int(slice_axis))


def from_source_orientation(array: np.ndarray, slice_axis: int) -> np.ndarray:
    return np.moveaxis(array, int(slice_axis), 0)


def volume_metrics(pred: np.ndarray, mask: np.ndarray, classes, spacing, hd95: bool = True) -> Dict:
    if hd95:
        pooled, directed = hd95_per_class(pred, mask, classes, spacing)
    else:
        pooled = directed = np.full(len(classes), np.nan)
    return {"dice": dice_per_class(pred, mask, classes).tolist(),
            "hd95": pooled.tolist(), "hd95_max": directed.tolist()}


def _nanmean(values) -> Optional[float]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else None


def evaluate(dataset, model, out=None, split: str = "test", predictions=None, device: str = "auto",
             batch_size: int = 16, force: bool = False, hd95: bool = True, progress=True) -> Dict:
    store = DatasetStore(dataset)
    manifest_in, config = read_model_dir(model)
    check_compatible(config, store, model)
    idx_split = store.indices(split)
    if not store.has_masks:
        raise AlsegError(f"{store.path} has no masks; evaluation needs reference masks")
    if out is not None:
        check_writable(out, force)
    if predictions is not None:
        check_writable(predictions, force)
    dev = resolve_device(device)
    names = list(dict.fromkeys(store.volumes[idx_split].tolist()))
    info = {v["name"]: v for v in store.volume_info}
    unmasked = [n for n in names if not info[n].get("native", False)]
    if unmasked:          # before any prediction: nothing half-done
        raise AlsegError(f"{store.path}: {len(unmasked)} volume(s) of split {split!r} have no mask (e.g. "
                         f"{unmasked[0]}); evaluate a split whose volumes all have masks")
    classes = list(range(1, store.num_classes))
    class_names = [str((store.attrs.get("classes") or {}).get(str(c), c)) for c in classes]

    rows, slice_rows, preds = [], [], {}
    present = set()
    nets = prediction_nets([model], store, "softmax", dev)      # loaded once, not per volume
    reporter = as_reporter(progress)
    reporter.start("evaluate", len(names))
    try:
        for name in names:
            vi = info[name]
            idx = store.volume_slices(name)
            probs = torch.cat([p[0] for _, p in predict_batches(nets, store, idx, "softmax",
                                                                 batch_size=batch_size)])
            small = probs.argmax(1).numpy().astype(np.uint8)
            native = store.native_mask(int(vi["index"]))
            present.update(np.unique(native).tolist())
            pred = to_native(small, vi.get("geometry"), native.shape[1:])
            spacing = vi.get("spacing")
            m = volume_metrics(pred, native, classes, spacing, hd95)
            rows.append({"volume": name, "patient": vi["patient"], "index": int(vi["index"]),
                         "shape": list(native.shape), "spacing": spacing, **m})
            # 2D Dice per slice at native size, for bootstrapping sets with few volumes
            slice_rows += [{"slice_id": sid, "volume": name,
                            "dice": dice_per_class(pred[z], native[z], classes).tolist()}
                           for z, sid in enumerate(store.slice_ids[idx])]
            if predictions is not None:
                preds[name] = pred
            reporter.update("evaluate", len(rows), "volumes")
    finally:
        reporter.finish("evaluate")

    dice = np.array([r["dice"] for r in rows])
    hd = np.array([r["hd95"] for r in rows], dtype=np.float64)
    hd_max = np.array([r["hd95_max"] for r in rows], dtype=np.float64)
    absent = [n for c, n in zip(classes, class_names) if c not in present]
    if len(absent) == len(class_names):
        raise AlsegError(f"{store.path}: no reference mask of split {split!r} holds any foreground class; "
                         f"nothing to evaluate")
    per_class = {n: {"dice": float(dice[:, i].mean()), "hd95": _nanmean(hd[:, i]),
                     "hd95_max": _nanmean(hd_max[:, i]),
                     "hd95_valid": int((~np.isnan(hd[:, i])).sum()), "absent": n in absent}
                 for i, n in enumerate(class_names)}
    counted = [v for v in per_class.values() if not v["absent"]]
    units = {"mm" if r["spacing"] else "px" for r in rows}
    result = {
        "split": split, "num_volumes": len(rows), "classes": class_names,
        "mean_dice": float(np.mean([v["dice"] for v in counted])),
        "mean_hd95": _nanmean([v["hd95"] for v in counted if v["hd95"] is not None]),
        "mean_hd95_max": _nanmean([v["hd95_max"] for v in counted if v["hd95_max"] is not None]),
        "absent_classes": absent,
        "hd95_unit": units.pop() if len(units) == 1 else "mixed (mm where spacing known, else px)",
        "per_class": per_class, "per_volume": rows, "per_slice": slice_rows,
    }
    pred_dir = None
    if predictions is not None:
        pred_dir = _write_predictions(predictions, preds, info, force)
    manifest = make_manifest("evaluation", {"split": split, "device": str(dev), "hd95": hd95},
                             inputs={"dataset": store.path, "model": Path(model) / "manifest.json"},
                             outputs={"eval": out, "predictions": pred_dir} if out else {"predictions": pred_dir},
                             device=str(dev), model_name=config["model"],
                             best_member=manifest_in["best_member"],
                             # a model whose best checkpoint was degenerate on validation stays flagged
                             degenerate=manifest_in.get("degenerate"), **result)
    if out is not None:
        write_json(out, manifest, force=force)
    return manifest


def _write_predictions(folder, preds: Dict[str, np.ndarray], info: Dict, force: bool) -> Path:
    import nibabel as nib

    with atomic_path(folder, force=force) as tmp:
        tmp.mkdir(parents=True)
        for name, pred in preds.items():
            vi = info[name]
            affine = np.asarray(vi["affine"], dtype=np.float64) if vi.get("affine") else np.eye(4)
            arr = to_source_orientation(pred, vi.get("slice_axis", 2))
            nib.save(nib.Nifti1Image(np.ascontiguousarray(arr, dtype=np.uint8), affine), str(tmp / f"{name}.nii.gz"))
    return Path(folder)
