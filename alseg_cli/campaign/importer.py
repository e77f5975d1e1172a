"""`alseg import-labels`: take an annotator's label volumes back into the dataset store.

A file maps to a volume by name (``labels/<volume>.nii.gz`` as `alseg export` wrote it, also
``<volume>_seg`` / ``_labels``). Its geometry is checked against the image's: the same shape
needs the same affine (within ``tolerance`` mm), so a mirrored or re-oriented file is refused
naming the file; a smaller label map on the same grid (3D Slicer can save a segmentation
cropped to its extent) is pasted back at its offset; anything else is refused. Values must be
declared classes (or ``ignore``, nnU-Net's "not annotated" label). Which slices count:
a requested slice (the selection's new slices) is annotated as drawn, background included,
unless all its voxels are ``ignore``; an unrequested slice counts when it holds foreground.
The store is updated in a copy that replaces it only when complete (a killed import leaves it
as it was), and a new labelled-set manifest (kind selection, so `select --labeled` and
`train-seg --labels` take it) lists what is annotated now, with each file's provenance.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_path, check_writable, write_json
from ..data.geometry import forward_labels
from ..data.resize import resize_labels
from ..errors import AlsegError
from ..integrity import finish_store
from ..io.readers import Ref, read, reader_for
from ..manifest import make_manifest
from ..store import AVAILABLE, LINEAGE, SHARD_SLICES, DatasetStore
from .export import safe_name

KINDS = ("masks", "scribbles")
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _volume_for(path: Path, by_name: Dict[str, Dict]) -> Dict:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for candidate in (name, name.removesuffix("_seg"), name.removesuffix("_labels")):
        if candidate in by_name:
            return by_name[candidate]
    raise AlsegError(f"{path}: its name matches no volume of the store (expected <volume>.nii.gz as "
                     f"`alseg export` names them)")


def on_image_grid(path: Path, data: np.ndarray, affine: np.ndarray, shape: Sequence[int], ref: np.ndarray,
                  tolerance: float) -> np.ndarray:
    """The label array on the image's voxel grid: as it is when shape and affine agree, pasted at
    its offset when it is a crop of the same grid; else a one-line error naming the file."""
    if tuple(data.shape) == tuple(shape):
        if not np.allclose(affine, ref, atol=tolerance):
            raise AlsegError(f"{path}: its affine differs from the image's (mirrored or another orientation?); "
                             f"save the labels on the image's own grid")
        return data
    if not np.allclose(affine[:3, :3], ref[:3, :3], atol=tolerance):
        raise AlsegError(f"{path}: shape {tuple(data.shape)} and axes differ from the image's {tuple(shape)}; "
                         f"resample the labels onto the image before importing")
    offset = np.linalg.solve(ref[:3, :3], affine[:3, 3] - ref[:3, 3])
    start = np.round(offset).astype(int)
    if not np.allclose(offset, start, atol=1e-3) or (start < 0).any() or \
            (start + np.asarray(data.shape) > np.asarray(shape)).any():
        raise AlsegError(f"{path}: a {tuple(data.shape)} label map that is not a crop of the image's "
                         f"{tuple(shape)} grid; resample it onto the image before importing")
    full = np.zeros(tuple(shape), dtype=data.dtype)
    full[tuple(slice(s, s + n) for s, n in zip(start, data.shape))] = data
    return full


def _label_arrays(files, by_name: Dict[str, Dict], tolerance: float, classes: int):
    """(file(s), volume info, label array on the image grid, drawn mask or None) per volume: a label
    volume as it is (geometry checked), or a volume's slice PNGs gathered into one array."""
    from PIL import Image

    from .export import PALETTE, parse_slice_png

    pngs: Dict[str, List] = {}
    for f in map(Path, files):
        if not f.is_file():
            raise AlsegError(f"{f}: no such label file")
        if f.suffix.lower() == ".png":
            parsed = parse_slice_png(f.name)
            if parsed is None or parsed[0] not in by_name:
                raise AlsegError(f"{f}: not a slice PNG name from `alseg export` (<volume>_axis<k>-<index>.png)")
            pngs.setdefault(parsed[0], []).append((f, parsed[1], parsed[2]))
            continue
        vi = _volume_for(f, by_name)
        raw = read(Ref(reader_for(f) or "nifti", str(f)))
        ref = np.asarray(vi["affine"], dtype=np.float64) if vi.get("affine") else np.eye(4)
        shape = vi.get("source_shape") or vi["shape"]
        affine = np.asarray(raw.affine, dtype=np.float64) if raw.affine is not None else ref
        yield f, vi, on_image_grid(f, np.asarray(raw.data), affine, shape, ref, tolerance), None
    colours = {PALETTE[c % len(PALETTE)]: c for c in range(classes)}
    for vname, items in pngs.items():
        vi = by_name[vname]
        axis = int(vi.get("slice_axis", 2))
        shape = [int(x) for x in (vi.get("source_shape") or vi["shape"])]
        data, drawn = np.zeros(shape, np.int64), np.zeros(shape, bool)
        for f, ax, index in items:
            img = np.asarray(Image.open(f))
            if img.ndim == 3:        # RGB(A): the colours of labelmap.txt
                rgb = [tuple(int(v) for v in px) for px in img[..., :3].reshape(-1, 3)]
                unknown = sorted({c for c in rgb if c not in colours})
                if unknown:
                    raise AlsegError(f"{f}: colour {unknown[0]} is not a class colour of labelmap.txt")
                img = np.array([colours[c] for c in rgb]).reshape(img.shape[:2])
            want = tuple(n for a, n in enumerate(shape) if a != axis)
            if ax != axis or img.shape != want or not 0 <= index < shape[axis]:
                raise AlsegError(f"{f}: a {img.shape} label of axis {ax} index {index}; the image's slices "
                                 f"along axis {axis} are {want} ({shape[axis]} of them)")
            sl = [slice(None)] * 3
            sl[axis] = index
            data[tuple(sl)], drawn[tuple(sl)] = img, True
        yield [f for f, _, _ in items], vi, data, drawn


def import_labels(dataset, files: Sequence, selection=None, out=None, kind: str = "masks",
                  ignore: Optional[int] = None, annotator: Optional[str] = None, tolerance: float = 1e-3,
                  force: bool = False) -> Dict:
    """Import label volumes into ``dataset`` (in place, atomically); return the new labelled-set
    manifest, also written to ``out``."""
    from ..prep import _slices_first

    if kind not in KINDS:
        raise AlsegError(f"--kind {kind!r}: choose masks or scribbles")
    store = DatasetStore(dataset)
    if out is not None:
        check_writable(out, force)
    sel = json.loads(Path(selection).read_text()) if selection else {}
    if selection and sel.get("kind") != "selection":
        raise AlsegError(f"{selection}: not a selection manifest")
    requested = set(sel.get("selected", []))
    classes = int(store.num_classes)
    if classes < 2:
        raise AlsegError(f"{store.path}: no classes declared; prep with --classes background,...")
    fill = 0 if kind == "masks" else store.unannotated
    if fill is None:
        fill = classes           # the value prep records for "not annotated" by default
    if ignore is None:           # the pool's declared nnU-Net "ignore" label, else scribbles' unpainted value
        ignore = store.attrs.get("ignore_label", fill if kind == "scribbles" else None)
    by_name = {}
    for vi in store.volume_info:
        by_name[vi["name"]] = by_name[safe_name(vi["name"])] = vi
    labels = store.read(kind) if kind in store.root else np.full((len(store), store.size, store.size), fill, np.uint8)
    have = store.available(kind).copy()
    arrived, extra, provenance = set(), set(), []
    for f, vi, data, drawn in _label_arrays(files, by_name, tolerance, classes):
        axis = int(vi.get("slice_axis", 2))
        values = set(np.unique(data[drawn] if drawn is not None else data).tolist()) - \
            ({int(ignore)} if ignore is not None else set())
        bad = sorted(v for v in values if not (0 <= v < classes and float(v).is_integer()))
        if bad:
            raise AlsegError(f"{f}: label value {bad[0]:g} is not a declared class (0..{classes - 1}"
                             + (f", ignore {ignore}" if ignore is not None else "") + ")")
        zhw = _slices_first(data.astype(np.int64), axis, channels=False)
        unset = zhw == int(ignore) if ignore is not None else np.zeros(zhw.shape, bool)
        if drawn is not None:       # PNG slices: only the slices that came are drawn
            unset |= ~_slices_first(drawn, axis, channels=False)
        small = np.where(unset, fill, zhw).astype(np.uint8)
        small = resize_labels(forward_labels(small, vi.get("geometry"), fill), store.size)
        taken = []
        for z, i in enumerate(store.volume_slices(vi["name"])):
            sid = str(store.slice_ids[i])
            # a mask slice counts only when drawn whole; a scribble slice when anything is drawn
            usable = not unset[z].any() if kind == "masks" else not unset[z].all()
            foreground = ((zhw[z] > 0) & ~unset[z]).any()
            if not usable or not (sid in requested or foreground):
                continue
            labels[i], have[i] = small[z], True
            taken.append(sid)
            (arrived if sid in requested else extra).add(sid)
        for file in ([f] if not isinstance(f, list) else f):
            provenance.append({"file": str(file.resolve()), "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
                               "volume": vi["name"], "slices": taken, "annotator": annotator,
                               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    # scribbles need their "not annotated" value on record for training (DMPLS's partial CE)
    extra_attrs = {"unannotated": int(fill)} if kind == "scribbles" and store.unannotated is None else {}
    _rewrite(store, kind, labels, have, provenance, extra_attrs)
    store = DatasetStore(dataset)
    labelled = {s: r for s, r in (sel.get("labeled") or {}).items() if s in store.index_of and have[store.index_of[s]]}
    new_round = int(sel.get("round", 0)) if sel else 0
    for sid in sorted(arrived | extra):
        labelled.setdefault(sid, new_round)
    missing = sorted(requested - arrived)
    manifest = make_manifest("selection", {"import": [p["file"] for p in provenance], "kind": kind},
                             inputs={"dataset": store.path, **({"selection": selection} if selection else {})},
                             outputs={"selection": out}, method=sel.get("method", "import"),
                             dataset=str(store.path.resolve()), round=new_round, labeled=labelled,
                             selected=sorted(arrived | extra), supervision="full" if kind == "masks" else "scribble",
                             imported={"requested_arrived": len(arrived), "unrequested_accepted": sorted(extra),
                                       "requested_missing": missing}, provenance=provenance,
                             budget={"resolved": len(labelled), "pool": int((store.split == "train").sum())})
    if out is not None:
        write_json(out, manifest, force=force)
    return manifest


def _rewrite(store: DatasetStore, kind: str, labels: np.ndarray, have: np.ndarray, provenance: List[Dict],
             extra_attrs: Dict) -> None:
    """The store with ``kind`` replaced, written in a copy that replaces it only when complete."""
    import zarr

    with atomic_path(store.path, force=True) as tmp:
        shutil.copytree(store.path, tmp, symlinks=True)
        root = zarr.open_group(str(tmp), mode="r+")
        per_shard = max(1, min(SHARD_SLICES, len(labels)))
        size = labels.shape[-1]
        root.create_array(kind, data=labels, chunks=(1, size, size), shards=(per_shard, size, size),
                          overwrite=True)
        if have.all():
            if AVAILABLE[kind] in root:
                del root[AVAILABLE[kind]]
        else:
            root.create_array(AVAILABLE[kind], data=have, chunks=(len(have),), overwrite=True)
        attrs = dict(root.attrs)
        split = np.asarray(store.split)
        attrs[f"has_{kind}"] = bool(have.any())
        attrs.setdefault("labelled_slices", {})[kind] = {sp: int((have & (split == sp)).sum())
                                                         for sp in sorted(set(split.tolist()))}
        vols = np.asarray(store.volumes)
        for vi in attrs["volumes"]:
            vi["has_mask" if kind == "masks" else "has_scribble"] = bool(have[vols == vi["name"]].any())
        attrs["annotations"] = list(attrs.get("annotations", [])) + provenance
        # the hashes this store had before each import: a `loop --human` run started on an
        # earlier version resumes on this one (its labels are the campaign's own)
        attrs[LINEAGE] = list(attrs.get(LINEAGE, [])) + [store.attrs["content_hash"]]
        root.attrs.update({**attrs, **extra_attrs})
        finish_store(tmp, root)
