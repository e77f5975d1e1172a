"""`prep`: volumes on disk (or the built-in phantoms) -> a dataset store + its manifest.

Flow: list the source (io/layouts.py) -> decide the slice axis once for the whole dataset
(so every slice has the same orientation) -> split patients -> stream volumes through the
readers, label checks and normalisation into ``store.write_dataset`` (atomic) -> write the
manifest ``<OUT>.manifest.json`` beside the store (atomic) and return it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import check_writable, write_json
from .data.geometry import forward_images, forward_labels, plan
from .data.normalize import SCHEMES, apply_scheme, parse_window, resolve_scheme
from .data.phantoms import make_phantoms, phantom_attrs
from .data.splits import DEFAULT_SPLIT, apply_split_file, load_split_file, parse_split, random_split
from .data.volume import Volume
from .errors import AlsegError
from .io.layouts import Listing, VolumeSpec, list_source
from .io.readers import header, read
from .manifest import make_manifest
from .progress import as_reporter
from .store import write_dataset

TIE = 1.1   # spacings / extents within 10% of each other count as equal


def manifest_path(out) -> Path:
    return Path(str(out) + ".manifest.json")


def detect_slice_axis(shapes: Sequence[Sequence[int]],
                      spacings: Sequence[Optional[Sequence[float]]]) -> Tuple[int, str]:
    """The slice axis of a dataset, from median shapes and spacings over its volumes.

    The axis with the largest spacing (clearly larger: > 10% above the next), else the axis
    with the smallest extent; near-ties (within 10%) go to the last axis, which is the
    through-plane axis in NIfTI/ITK index order (e.g. MSD Hippocampus: ~35 x 50 x 36 at 1 mm).
    """
    if not shapes:
        raise AlsegError("no volumes to detect the slice axis from")
    known = [s for s in spacings if s is not None]
    if len(known) == len(spacings):
        sp = np.median(np.asarray(known, dtype=np.float64), axis=0)
        order = np.argsort(-sp, kind="stable")
        if sp[order[0]] > TIE * sp[order[1]]:
            return int(order[0]), f"largest spacing ({sp[order[0]]:g})"
    ext = np.median(np.asarray(shapes, dtype=np.float64), axis=0)
    candidates = np.flatnonzero(ext <= TIE * ext.min())
    axis = int(candidates[-1])
    return axis, f"smallest extent ({ext[axis]:g})"


def check_labels(arr: np.ndarray, where: str, allowed: Optional[set] = None,
                 binarize: bool = False, unannotated: Optional[int] = None) -> np.ndarray:
    """Integer class labels in 0..254 (and in dataset.json's set when given) -> uint8.

    ``unannotated`` (scribbles only) is accepted too, so ``--unannotated 255`` works.
    """
    arr = np.asarray(arr)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise AlsegError(f"{where}: labels contain NaN or inf")
        if not np.array_equal(arr, np.round(arr)):
            raise AlsegError(f"{where}: labels are not integers (e.g. {arr[arr != np.round(arr)].flat[0]:g})")
    elif arr.dtype.kind not in "iu":
        raise AlsegError(f"{where}: labels have dtype {arr.dtype}, expected integers")
    if binarize:
        return (arr > 0).astype(np.uint8)
    # the unannotated scribble value may be 255; every other value must be a class index
    vals = arr if unannotated is None or not 0 <= unannotated <= 255 else arr[arr != unannotated]
    lo, hi = (vals.min(), vals.max()) if vals.size else (0, 0)
    if lo < 0:
        raise AlsegError(f"{where}: negative label value {lo:g}")
    if hi >= 255:
        raise AlsegError(f"{where}: label value {hi:g} is out of range (expected class indices 0..254)")
    out = arr.astype(np.uint8)
    if allowed is not None:
        bad = sorted(set(np.unique(out).tolist()) - allowed)
        if bad:
            raise AlsegError(f"{where}: label value {bad[0]} is not one of the dataset's classes "
                             f"({', '.join(map(str, sorted(allowed)))}; from the layout or --classes)")
    return out


def parse_classes(text) -> Dict[int, str]:
    """``--classes``: a count ("4": classes 0..3), names in index order ("background,RV,Myo,LV")
    or index=name pairs ("0=background,1=liver"). Class 0 is the background."""
    text = str(text).strip()
    if text.isdigit():
        n = int(text)
        if not 2 <= n <= 255:
            raise AlsegError(f"--classes {text}: need 2..255 classes (background included)")
        return {k: ("background" if k == 0 else f"class{k}") for k in range(n)}
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise AlsegError("--classes is empty")
    classes: Dict[int, str] = {}
    for i, part in enumerate(parts):
        key, sep, name = part.partition("=")
        if sep:
            if not key.strip().isdigit() or int(key) > 254:
                raise AlsegError(f"--classes {text}: {key.strip()!s} is not a class index 0..254")
            classes[int(key)] = name.strip() or f"class{key.strip()}"
        else:
            classes[i] = part
    if 0 not in classes:
        classes[0] = "background"
    if len(classes) < 2:
        raise AlsegError(f"--classes {text}: name at least one foreground class")
    return dict(sorted(classes.items()))


def check_class_values(found: Dict[int, str]) -> None:
    """Classes inferred from the masks must be contiguous from 0: a value past a gap (7 in a
    set 0..3) is far more often a stray voxel than a class of its own. ``found`` maps each
    value to the first file holding it."""
    values = sorted(found)
    expected = set(range(values[-1] + 1)) if values else set()
    gaps = sorted(expected - set(values))
    if gaps:
        stray = next(v for v in values if v > gaps[0])
        below = [v for v in values if v < gaps[0]]
        raise AlsegError(f"{found[stray]}: label value {stray} leaves a gap after classes "
                         f"{below[0]}..{below[-1]} (no mask holds {gaps[0]}); fix the file, or pass "
                         f"--classes {len(below)} to refuse (with --skip-bad: skip) volumes with other "
                         f"values, or --classes {stray + 1} to keep it")


def _slices_first(data: np.ndarray, axis: int, channels: bool) -> np.ndarray:
    """(X, Y, Z[, C]) -> (Z, C, H, W) for images or (Z, H, W) for labels (channels=False)."""
    spatial = [a for a in range(3) if a != axis]
    if channels:
        return np.transpose(data, (axis, 3, *spatial))
    return np.transpose(data, (axis, *spatial))


AFFINE_TOLERANCE = 1e-2    # mm: a label file on its image's grid agrees to float rounding


@dataclass
class Preprocess:
    """What prep does to every volume after reading it (all recorded in the store attrs)."""

    scheme: str = "percentile"             # data/normalize.py SCHEMES
    window: Optional[Tuple[float, float]] = None
    spacing: Optional[float] = None        # in-plane mm per pixel to resample to
    crop: Optional[int] = None             # centre crop / pad to crop x crop after resampling

    def attrs(self) -> Dict:
        return {"normalize": SCHEMES[self.scheme], "normalize_scheme": self.scheme,
                "window": None if self.window is None else list(self.window),
                "spacing": self.spacing, "crop": self.crop}


def _map_values(data: np.ndarray, mapping: Optional[Dict[int, int]]) -> np.ndarray:
    if not mapping:
        return data
    out = np.array(data, copy=True)
    for src, dst in mapping.items():
        out[data == src] = dst
    return out


def load_volume(spec: VolumeSpec, axis: int, pre: Preprocess, allowed: Optional[set],
                unannotated: Optional[int] = None) -> Volume:
    """Read, check and reorient one volume (slice axis first), then normalise, resample and
    crop it as ``pre`` says; the mask as drawn stays beside it for native evaluation."""
    chans = [read(r) for r in spec.images]
    first = chans[0]
    datas = [c.data if c.channels else c.data[..., None] for c in chans]
    shapes = {d.shape[:3] for d in datas}
    if len(shapes) > 1:
        raise AlsegError(f"{spec.images[1]}: channel shape {datas[1].shape[:3]} differs from "
                         f"{spec.images[0]}'s {datas[0].shape[:3]}")
    data = np.concatenate(datas, axis=3).astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise AlsegError(f"{spec.images[0]}: image contains NaN or inf values")
    image = _slices_first(data, axis, channels=True)
    labels = {}
    for kind, ref in (("mask", spec.mask), ("scribble", spec.scribble)):
        if ref is None:
            continue
        raw = read(ref)
        if raw.channels or raw.data.shape != data.shape[:3]:
            raise AlsegError(f"{ref}: {kind} shape {raw.data.shape} does not match image "
                             f"{spec.images[0]} shape {data.shape[:3]}")
        if raw.affine is not None and first.affine is not None and \
                not np.allclose(np.asarray(raw.affine), np.asarray(first.affine), atol=AFFINE_TOLERANCE):
            raise AlsegError(f"{ref}: {kind} affine differs from image {spec.images[0]}'s (mirrored or "
                             f"another orientation?); save the labels on the image's own grid")
        lab = check_labels(_map_values(raw.data, spec.label_map), str(ref),
                           allowed if kind == "mask" else None,
                           binarize=spec.binarize and kind == "mask",
                           unannotated=unannotated if kind == "scribble" else None)
        labels[kind] = np.ascontiguousarray(_slices_first(lab, axis, channels=False))
    image = apply_scheme(image, pre.scheme, pre.window)
    spacing = None
    if first.spacing is not None:
        sp = list(first.spacing)
        spacing = [sp[axis]] + [sp[a] for a in range(3) if a != axis]
    geom = plan(image.shape[2:], spacing and spacing[1:], pre.spacing, pre.crop, str(spec.images[0]))
    native_mask = labels.get("mask")
    if geom is not None:
        pads = geom["resampled"][0] < geom["size"][0] or geom["resampled"][1] < geom["size"][1]
        if "scribble" in labels and pads and unannotated is None:
            raise AlsegError(f"{spec.scribble}: --crop pads this volume and its scribbles need a "
                             f"'not annotated' value for the border; pass --unannotated")
        image = forward_images(image, geom, float(image.min()))
        labels = {k: forward_labels(v, geom, 0 if k == "mask" else unannotated) for k, v in labels.items()}
    # spacing and shape stay the native grid's: evaluation (Dice, HD95 in mm) happens there
    meta = {"slice_axis": int(axis), "source_shape": [int(s) for s in data.shape[:3]]}
    if geom is not None:
        meta.update(geometry=geom, shape=[int(image.shape[0])] + geom["native"])
    return Volume(name=spec.name, patient=spec.patient, image=np.ascontiguousarray(image, np.float32),
                  mask=labels.get("mask"), scribble=labels.get("scribble"), spacing=spacing,
                  affine=first.affine, source=_absolute(spec.images[0]), meta=meta, native_mask=native_mask)


def _absolute(ref) -> str:
    """The source file as an absolute path (``:key`` for HDF5), so exports find it from anywhere."""
    path = str(Path(ref.path).resolve())
    return f"{path}:{ref.key}" if ref.key else path


def parse_label_map(text) -> Optional[Dict[int, int]]:
    """``--label-map 200=1,500=2,600=3`` -> {200: 1, 500: 2, 600: 3} (values not named stay)."""
    if text is None:
        return None
    out = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        src, sep, dst = part.partition("=")
        try:
            out[int(src)] = int(dst)
        except ValueError:
            raise AlsegError(f"--label-map {text}: expected FROM=TO pairs, e.g. 200=1,500=2") from None
        if not 0 <= out[int(src)] <= 255:
            raise AlsegError(f"--label-map {text}: {dst} is not a label value 0..255")
    if not out:
        raise AlsegError("--label-map is empty")
    return out


def check_scribble_background(scribble: np.ndarray, unannotated: Optional[int], where: str) -> None:
    """Scribbles cover a few percent of a volume: the value covering most of it is the 'not
    annotated' one. When that is not the store's unannotated value, training would read the
    unannotated area as a class; refuse it in one line instead."""
    values, counts = np.unique(scribble, return_counts=True)
    top = int(values[np.argmax(counts)])
    if counts.max() > 0.5 * scribble.size and unannotated is not None and top != unannotated:
        raise AlsegError(f"{where}: {100 * counts.max() / scribble.size:.0f}% of the scribble is value {top}, "
                         f"but the unannotated value is {unannotated}; pass --unannotated {top} if {top} "
                         f"means 'not annotated'")


def _resolve_split(patients: List[str], split: Optional[str], split_file, seed: int) -> Dict[str, str]:
    if split_file:
        return apply_split_file(patients, load_split_file(split_file), split_file)
    return random_split(patients, parse_split(split or DEFAULT_SPLIT), seed)


def run_prep(source, out, size: Optional[int] = None, split: Optional[str] = None, split_file=None,
             seed: int = 0, slice_axis: Optional[int] = None, normalize: bool = True,
             unannotated: Optional[int] = None, skip_bad: bool = False, force: bool = False,
             images=None, masks=None, scribbles=None, patient_regex: Optional[str] = None,
             patients: int = 12, classes=None, progress=None, window=None, spacing: Optional[float] = None,
             crop: Optional[int] = None, label_map=None) -> Dict:
    """Prep SOURCE into the dataset store OUT; returns (and saves) the "dataset" manifest.

    Classes come from ``classes`` (``--classes``), else the layout (ACDC's four, MSD's
    dataset.json), else the mask values, which must then run 0..K-1 without gaps; a mask
    value outside a given class set is an error naming the file (skipped with ``skip_bad``).
    ``progress``: a Reporter (progress.py) told of each volume written (the CLI's bar).
    ``normalize``: True (percentile, or window with ``window``), False (none) or a scheme name
    (data/normalize.py); ``window`` "LO,HI" clips first; ``spacing`` (mm) resamples in-plane and
    ``crop`` centre crops/pads after it (data/geometry.py); ``label_map`` "200=1,500=2" renames
    label values before they are checked.
    """
    out = Path(out)
    mpath = manifest_path(out)
    check_writable(out, force)          # fail before any work, and never leave a store without
    check_writable(mpath, force)        # its manifest
    if unannotated is not None and not 0 <= unannotated <= 255:
        raise AlsegError(f"--unannotated {unannotated}: must be a uint8 value 0..255")
    if slice_axis is not None and slice_axis not in (0, 1, 2):
        raise AlsegError(f"--slice-axis {slice_axis}: must be 0, 1 or 2")
    args = {"source": str(source) if source is not None else None, "size": size, "split": split,
            "split_file": str(split_file) if split_file else None, "seed": seed,
            "slice_axis": slice_axis, "normalize": normalize, "unannotated": unannotated,
            "skip_bad": skip_bad, "images": images and str(images), "masks": masks and str(masks),
            "scribbles": scribbles and str(scribbles), "patient_regex": patient_regex,
            "classes": None if classes is None else str(classes), "window": window, "spacing": spacing,
            "crop": crop, "label_map": label_map}
    class_map = parse_classes(classes) if classes is not None else None
    win = parse_window(window)
    scheme = resolve_scheme(None if normalize is True else "none" if normalize is False else normalize, win)
    if crop is not None and int(crop) < 8:
        raise AlsegError(f"--crop {crop}: must be at least 8 pixels")
    pre = Preprocess(scheme, win, None if spacing is None else float(spacing), None if crop is None else int(crop))
    value_map = parse_label_map(label_map)
    if str(source) == "phantoms" and not images:
        return _prep_phantoms(out, mpath, size or 64, split, split_file, seed, patients, force,
                              progress, args)
    size = size or 256
    opts = {"images": images, "masks": masks, "scribbles": scribbles, "patient_regex": patient_regex}
    layout, listing = list_source(source, opts)
    if value_map:
        for spec in listing.specs:
            spec.label_map = {**(spec.label_map or {}), **value_map}
    if class_map is not None:
        listing.classes = class_map
    skipped = [{"file": f, "error": msg} for f, msg in listing.problems]
    if skipped and not skip_bad:
        raise AlsegError(f"{skipped[0]['file']}: {skipped[0]['error']} (or pass --skip-bad)")
    specs = listing.specs
    if not specs:
        raise AlsegError(f"{source if source is not None else images}: no volumes found (empty source)")

    # the slice axis, once for the dataset: forced, fixed by the layout, or from the headers
    fixed = {s.slice_axis for s in specs if s.slice_axis is not None}
    if slice_axis is not None:
        axis, why = slice_axis, "--slice-axis"
    elif fixed:
        axis, why = fixed.pop(), f"{layout} layout"
    else:
        heads, good = [], []
        for s in specs:
            try:
                heads.append(header(s.images[0]))
                good.append(s)
            except AlsegError as exc:
                if not skip_bad:
                    raise
                skipped.append({"file": str(s.images[0]), "error": str(exc), "volume": s.name})
        specs = good
        if not specs:
            raise AlsegError(f"{source}: every volume was skipped as bad; nothing to write")
        axis, why = detect_slice_axis([h[0] for h in heads], [h[1] for h in heads])

    unlabelled = not any(s.mask or s.scribble for s in specs)
    if listing.splits and not (split or split_file):
        split_map = {s.patient: listing.splits[s.patient] for s in specs}     # the release's own split
    elif unlabelled and not (split or split_file):
        # an unlabelled pool (a campaign's start): every volume is a candidate for annotation;
        # val/test would hold slices `select` never offers
        split_map = {s.patient: "train" for s in specs}
    else:
        split_map = _resolve_split(sorted({s.patient for s in specs}), split, split_file, seed)
    # nnU-Net's "ignore" label (dataset.json or --classes) marks unannotated voxels: not a class
    ignore_label = next((k for k, v in (listing.classes or {}).items() if str(v).lower() == "ignore"), None)
    if ignore_label is not None:
        listing.classes = {k: v for k, v in listing.classes.items() if k != ignore_label}
        if not unlabelled:
            raise AlsegError(f"label {ignore_label} is nnU-Net's 'ignore' (partly annotated volumes): prep the "
                             f"images alone, then bring the labels with `alseg import-labels --ignore {ignore_label}`")
    allowed = set(listing.classes) if listing.classes else None
    attrs = {"source": {"kind": layout, "path": str(Path(source).resolve()) if source else str(images)},
             "preprocessing": {"size": size, **pre.attrs(), "slice_axis": axis, "slice_axis_reason": why,
                               "split": "layout" if listing.splits and not (split or split_file) else
                               "file" if split_file else "all to the pool (no labels)" if unlabelled and not split
                               else "seeded fractions"},
             "slice_axis": axis, **({"ignore_label": int(ignore_label)} if ignore_label is not None else {})}
    scribble_unannotated = unannotated if unannotated is not None else listing.unannotated
    if scribble_unannotated is None and listing.classes:
        scribble_unannotated = max(listing.classes) + 1     # the default _class_attrs records
    stats = {"max_label": -1, "volumes": 0, "scribbles": False, "values": {}}
    total = len(specs)

    def stream():
        for i, spec in enumerate(specs):
            try:
                vol = load_volume(spec, axis, pre, allowed, scribble_unannotated)
                if vol.scribble is not None:
                    check_scribble_background(vol.scribble, scribble_unannotated, str(spec.scribble))
            except AlsegError as exc:
                if not skip_bad:
                    raise
                skipped.append({"file": str(spec.images[0]), "error": str(exc), "volume": spec.name})
                vol = None
            if vol is not None:
                if vol.mask is not None:
                    stats["max_label"] = max(stats["max_label"], int(vol.mask.max()))
                    for v in np.unique(vol.mask).tolist():
                        stats["values"].setdefault(int(v), str(spec.mask))
                stats["scribbles"] |= vol.scribble is not None
                stats["volumes"] += 1
                yield vol
            reporter.update("prep", i + 1, "volumes")
        # write_dataset spreads ``attrs`` into the store only after the last volume, so the
        # class count found while streaming (no second pass over the data) lands in the store
        if not allowed:
            check_class_values(stats["values"])
        attrs.update(_class_attrs(listing, stats["max_label"], unannotated, stats["scribbles"]))

    reporter = as_reporter(progress)
    reporter.start("prep", total)
    try:
        meta = write_dataset(out, stream(), size, split_map, attrs, force=force)
    finally:
        reporter.finish("prep")
    inputs = {"source": source} if source is not None else {
        k: v for k, v in (("images", images), ("masks", masks), ("scribbles", scribbles)) if v}
    return _finish(out, mpath, meta, args, seed, skipped, inputs, split_map)


def _class_attrs(listing: Listing, max_label: int, unannotated, has_scribbles: bool) -> Dict:
    if listing.classes:
        num = max(listing.classes) + 1          # mask values were checked against these
        names = {str(k): listing.classes.get(k, f"class{k}") for k in range(num)}
    else:
        num = max_label + 1 if max_label >= 0 else 0
        names = {str(k): ("background" if k == 0 else f"class{k}") for k in range(num)}
    if unannotated is None:
        # ACDC records 4; otherwise the ACDC convention "unannotated = number of classes"
        unannotated = listing.unannotated if listing.unannotated is not None else (num if has_scribbles else None)
    return {"num_classes": int(num), "classes": names, "unannotated": unannotated}


def _prep_phantoms(out, mpath, size, split, split_file, seed, patients, force, progress, args):
    reporter = as_reporter(progress)
    if patients < 1:
        raise AlsegError(f"--patients {patients}: need at least 1 patient")
    names = [f"phantom{p:03d}" for p in range(patients)]
    split_map = _resolve_split(names, split, split_file, seed)
    attrs = {**phantom_attrs(), "source": {"kind": "phantoms", "patients": patients, "seed": seed},
             "preprocessing": {"size": size, "normalize": "phantom [0,1]"}, "slice_axis": 0}
    done = [0]

    def tick(_vol):
        done[0] += 1
        reporter.update("prep", done[0], "volumes")

    reporter.start("prep", 2 * patients)
    try:
        meta = write_dataset(out, make_phantoms(patients, size, 8, seed), size, split_map, attrs,
                             force=force, on_volume=tick)
    finally:
        reporter.finish("prep")
    return _finish(out, mpath, meta, {**args, "size": size, "patients": patients}, seed, [], {}, split_map)


def _finish(out, mpath, meta, args, seed, skipped, inputs, split_map) -> Dict:
    vols = meta["volumes"]
    manifest = make_manifest(
        "dataset", args, inputs=inputs,
        outputs={"dataset": out, "manifest": mpath}, seed=seed,
        layout=meta["source"]["kind"], num_volumes=len(vols), num_slices=meta["num_slices"],
        num_patients=len({v["patient"] for v in vols}), num_classes=meta["num_classes"],
        classes=meta["classes"], unannotated=meta.get("unannotated"), channels=meta["channels"],
        size=meta["size"], slice_axis=meta.get("slice_axis"), splits=meta["splits"],
        split_patients=_split_patients(vols, split_map), has_masks=meta["has_masks"],
        has_scribbles=meta["has_scribbles"], labelled_slices=meta.get("labelled_slices"), content_hash=meta["content_hash"], skipped=skipped)
    try:
        write_json(mpath, manifest, force=True)
    except BaseException:
        import shutil

        shutil.rmtree(out, ignore_errors=True)   # no store without its manifest
        raise
    return manifest


def _split_patients(vols, split_map) -> Dict[str, int]:
    """Patients per split, counting only patients that made it into the store."""
    counts: Dict[str, int] = {}
    for patient in sorted({v["patient"] for v in vols}):
        name = split_map.get(patient, "train")
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_phantom_store(path, patients: int = 12, size: int = 64, slices: int = 8, seed: int = 0,
                        split: dict = None, force: bool = False) -> dict:
    """Convenience for tests and demos: phantoms straight into a dataset store.

    Default split by patient: first 70% train, next 10% val (at least one), rest test.
    """
    names = [f"phantom{p:03d}" for p in range(patients)]
    if split is None:
        n_train = max(1, int(round(patients * 0.7)))
        n_val = max(1, int(round(patients * 0.1)))
        split = {n: ("train" if i < n_train else "val" if i < n_train + n_val else "test")
                 for i, n in enumerate(names)}
    attrs = {**phantom_attrs(), "source": {"kind": "phantoms", "patients": patients, "seed": seed},
             "preprocessing": {"size": size, "normalize": "phantom [0,1]"}}
    return write_dataset(path, make_phantoms(patients, size, slices, seed), size, split, attrs, force=force)
