"""`alseg predict`: segment volume files that were never prepped.

Each input (NIfTI, MHA/MHD, NRRD, a DICOM folder, ...) goes through the preprocessing the
model's training store recorded (normalisation scheme and window, slice axis, in-plane
resampling and crop, working size: `prep` itself runs, into a temporary store), is predicted
slice by slice, mapped back to the native grid exactly as evaluation does, and written with
the input's own header: a NIfTI input's header is copied whole (qform and sform, codes
included), an ITK input's origin, spacing and direction are copied; DICOM folders become
NIfTI with the affine prep derived. Beside the label files: labels.txt (an ITK-SNAP label
description) and, on request, the softmax probabilities.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, check_writable
from ..data.geometry import to_native
from ..errors import AlsegError
from ..figures.common import LABEL_PALETTE as PALETTE
from ..manifest import make_manifest, save_manifest
from ..store import DatasetStore
from ..segmentation.predict import predict_batches, prediction_nets, read_model_dir


def training_preprocessing(model_dir, config: Dict, manifest: Dict) -> Dict:
    """What the model's training store did to its volumes: recorded in config.json by
    train-seg, else read from the training store named in the model's manifest."""
    if config.get("preprocessing"):
        return config["preprocessing"]
    store = (manifest.get("inputs") or {}).get("dataset")
    path = store.get("path") if isinstance(store, dict) else store
    if path and Path(path).exists():
        pre = DatasetStore(path).attrs.get("preprocessing")
        if pre:
            return pre
    raise AlsegError(f"{model_dir}: the model records no preprocessing and its training store is not "
                     f"at hand; retrain it with this alseg (train-seg records what prep did)")


def _out_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def predict_files(model, inputs: Sequence, out, device: str = "auto", probabilities: bool = False,
                  overlays: int = 0, force: bool = False, progress=None) -> Dict:
    """Predict every input volume file (or DICOM folder) into OUT/<name>.nii.gz (NIfTI and DICOM
    inputs) or OUT/<name>.<its suffix> (ITK inputs); returns the manifest (OUT/manifest.json).
    ``overlays``: also OUT/<name>_overlay.png, that many slices with the most predicted
    foreground, at the working size, the labels over the image."""
    from ..prep import run_prep

    manifest_in, config = read_model_dir(model)
    pre = training_preprocessing(model, config, manifest_in)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise AlsegError("predict: name at least one volume file or DICOM folder")
    for p in inputs:
        if not p.exists():
            raise AlsegError(f"{p}: no such file or folder")
    names = [_out_name(p) for p in inputs]
    if len(set(names)) != len(names):
        raise AlsegError("predict: two inputs share the name "
                         f"{next(n for n in names if names.count(n) > 1)!r}; predict them into separate folders")
    out = Path(out)
    check_writable(out, force)
    stage = Path(tempfile.mkdtemp(prefix="alseg-predict-"))
    try:
        links = stage / "images"
        links.mkdir()
        for p, n in zip(inputs, names):       # staged by our names: an input's name never picks a path
            suffix = "" if p.is_dir() else p.name[len(_out_name(p)):]
            os.symlink(p.resolve(), links / f"{n}{suffix}")
        store_path = stage / "data.zarr"
        run_prep(None, store_path, images=links, size=int(config["size"]), split="train=1",
                 slice_axis=pre.get("slice_axis"), normalize=pre.get("normalize_scheme") or True,
                 window=",".join(map(str, pre["window"])) if pre.get("window") else None,
                 spacing=pre.get("spacing"), crop=pre.get("crop"), classes=str(int(config["num_classes"])))
        store = DatasetStore(store_path)
        if store.channels != int(config["in_channels"]):
            raise AlsegError(f"predict: the model takes {config['in_channels']} channel(s), the inputs have "
                             f"{store.channels}")
        nets = prediction_nets([model], store, "softmax", device)
        with atomic_path(out, force=force) as tmp:
            tmp.mkdir(parents=True)
            rows = [_predict_one(nets, store, vi, inputs[names.index(vi["name"])], tmp, config, probabilities,
                                 overlays) for vi in store.volume_info]
            _write_label_table(tmp / "labels.txt", config)
            manifest = make_manifest("prediction", {"device": device, "probabilities": probabilities},
                                     inputs={"model": Path(model) / "manifest.json",
                                             "volumes": [str(p) for p in inputs]},
                                     outputs={"predictions": out}, model_name=config["model"],
                                     preprocessing=pre, volumes=rows)
            save_manifest(tmp / "manifest.json", manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _predict_one(nets, store: DatasetStore, vi: Dict, source: Path, tmp: Path, config: Dict,
                 probabilities: bool, overlays: int) -> Dict:
    from ..segmentation.evaluate import to_source_orientation

    idx = store.volume_slices(vi["name"])
    probs = torch.cat([p[0] for _, p in predict_batches(nets, store, idx, "softmax")])
    small = probs.argmax(1).numpy().astype(np.uint8)
    native_hw = vi["shape"][1:]
    label = to_source_orientation(to_native(small, vi.get("geometry"), native_hw), vi.get("slice_axis", 2))
    written = _write_like(source, label, tmp / vi["name"], vi)
    row = {"volume": vi["name"], "input": str(source), "output": written.name,
           "voxels": {str(c): int((label == c).sum()) for c in range(int(config["num_classes"]))}}
    if probabilities:
        p = np.stack([to_source_orientation(_native_probs(probs[:, c].numpy(), vi), vi.get("slice_axis", 2))
                      for c in range(probs.shape[1])], axis=-1)
        row["probabilities"] = _write_like(source, p.astype(np.float32), tmp / f"{vi['name']}_probabilities", vi).name
    if overlays > 0:
        row["overlay"] = _write_overlay(store, idx, small, vi, tmp, config, overlays).name
    return row


def _write_overlay(store: DatasetStore, idx: np.ndarray, small: np.ndarray, vi: Dict, tmp: Path, config: Dict,
                   n: int) -> Path:
    """The ``n`` slices with the most predicted foreground (in slice order), labels over image."""
    from ..figures.overlay import label_sheet
    fg = (small > 0).reshape(len(small), -1).sum(1)
    pick = np.sort(np.argsort(-fg, kind="stable")[:n])
    axis = int(vi.get("slice_axis", 2))
    classes = config.get("classes") if isinstance(config.get("classes"), dict) else {}
    names = {c: str(classes.get(str(c), f"class{c}")) for c in range(int(config["num_classes"]))}
    titles = [f"{vi['name']} axis {axis} index {int(store.z[idx[k]])}" for k in pick]
    return label_sheet(store.images(idx[pick]), small[pick], titles, names, tmp / f"{vi['name']}_overlay.png",
                       force=True)


def _native_probs(prob_zhw: np.ndarray, vi: Dict) -> np.ndarray:
    """One class's probabilities on the native grid (bilinear, through the same crop as labels)."""
    from ..data.resize import resize_images
    geom = vi.get("geometry")
    h0, w0 = vi["shape"][1:]
    if geom is None:
        return resize_images(prob_zhw[:, None], (h0, w0))[:, 0]
    (h1, w1), (ch, cw), (oy, ox) = geom["resampled"], geom["size"], geom["offset"]
    cropped = resize_images(prob_zhw[:, None], (ch, cw))[:, 0]
    full = np.zeros((prob_zhw.shape[0], h1, w1), np.float32)
    ys, yd = slice(max(0, oy), min(h1, oy + ch)), slice(max(0, oy) - oy, min(h1, oy + ch) - oy)
    xs, xd = slice(max(0, ox), min(w1, ox + cw)), slice(max(0, ox) - ox, min(w1, ox + cw) - ox)
    full[:, ys, xs] = cropped[:, yd, xd]
    return resize_images(full[:, None], (h0, w0))[:, 0]


def _write_like(source: Path, array: np.ndarray, stem: Path, vi: Dict) -> Path:
    """Write ``array`` (the source's voxel order) with the source's header."""
    import nibabel as nib
    name = source.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        img = nib.load(str(source))
        header = img.header.copy()
        header.set_data_dtype(array.dtype)
        out = nib.Nifti1Image(array, None, header=header)
        out.set_qform(img.get_qform(), code=int(img.header["qform_code"]))
        out.set_sform(img.get_sform(), code=int(img.header["sform_code"]))
        if array.ndim == 4:
            out.header.set_intent("vector")
        path = stem.with_name(stem.name + ".nii.gz")
        nib.save(out, str(path))
        return path
    if source.is_file():
        import SimpleITK as sitk
        ref = sitk.ReadImage(str(source))
        order = (2, 1, 0) if array.ndim == 3 else (2, 1, 0, 3)     # (x, y, z[, C]) -> ITK's (z, y, x[, C])
        img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, order)), isVector=array.ndim == 4)
        img.CopyInformation(ref)
        suffix = source.name[len(_out_name(source)):]
        path = stem.with_name(stem.name + (suffix if suffix in (".mha", ".nrrd") else ".mha"))
        sitk.WriteImage(img, str(path), True)
        return path
    affine = np.asarray(vi["affine"], dtype=np.float64) if vi.get("affine") else np.eye(4)   # a DICOM series
    path = stem.with_name(stem.name + ".nii.gz")
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _write_label_table(path: Path, config: Dict) -> None:
    """ITK-SNAP's label description file."""
    classes = config.get("classes") or {}
    lines = ["# IDX  -R-  -G-  -B-  -A--  VIS MSH  LABEL"]
    for c in range(int(config["num_classes"])):
        r, g, b = PALETTE[c % len(PALETTE)]
        label = str(classes.get(str(c), f"class{c}") if isinstance(classes, dict) else f"class{c}")
        lines.append(f'{c:5d} {r:4d} {g:4d} {b:4d} {0 if c == 0 else 1:5d} {0 if c == 0 else 1:3d} '
                     f'{0 if c == 0 else 1:3d}    "{label}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
