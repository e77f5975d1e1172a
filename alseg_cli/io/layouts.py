"""Source layouts: find the volumes of a dataset on disk and pair images with labels.

Each layout turns SOURCE into a list of :class:`VolumeSpec` (where an image, its mask and
its scribble live, and which patient it belongs to) plus a list of problems (an image with
no pair, ...). Nothing is read yet; prep decides whether a problem is fatal (default) or
skipped (``--skip-bad``). Layouts are in a registry and auto-detected in registry order.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import AlsegError
from ..registry import Registry
from .readers import HDF5, VOLUME_SUFFIXES, Ref, frame_files, reader_for, stem_of, suffix_of

LAYOUTS = Registry("layout")
MASK_SUFFIXES = ("_gt", "_manual", "_seg", "_label", "_labels", "_mask")
SCRIBBLE_SUFFIXES = ("_scribble", "_scribbles")


@dataclass
class VolumeSpec:
    name: str
    patient: str
    images: List[Ref]                      # several refs = channels (nnU-Net _0000, _0001 ...)
    mask: Optional[Ref] = None
    scribble: Optional[Ref] = None
    slice_axis: Optional[int] = None       # fixed by the layout (video frames), else detected
    binarize: bool = False                 # DAVIS: any object id > 0 is foreground
    label_map: Optional[Dict[int, int]] = None   # label values renamed before checking (MS-CMR 200 -> 1)


@dataclass
class Listing:
    specs: List[VolumeSpec]
    problems: List[Tuple[str, str]] = field(default_factory=list)   # (file, what is wrong)
    classes: Optional[Dict[int, str]] = None                         # from dataset.json
    unannotated: Optional[int] = None
    splits: Optional[Dict[str, str]] = None                          # patient -> split, when the release fixes it


def patient_of(stem: str, regex: Optional[str]) -> Optional[str]:
    """Patient id of a volume name: ``--patient-regex`` (first group, else the match), or the
    name without a trailing ``_frameNN`` (ACDC frames of one heart are one patient)."""
    if regex:
        m = re.search(regex, stem)
        if not m:
            return None
        return m.group(1) if m.groups() else m.group(0)
    return re.sub(r"_frame\d+$", "", stem)


def _volume_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir()
                  if (p.is_file() and suffix_of(p) in VOLUME_SUFFIXES and not p.name.startswith("."))
                  or (p.is_dir() and reader_for(p) == "dicom"))


def _ref(path: Path) -> Ref:
    return Ref(reader_for(path) or "nifti", str(path))


def _find_pair(folder: Path, stem: str, suffixes, same_name: Optional[str]) -> Optional[Path]:
    """The label for an image: same file name, or stem + a known suffix with any extension."""
    if same_name and (folder / same_name).exists():
        return folder / same_name
    for suf in suffixes:
        for ext in VOLUME_SUFFIXES:
            cand = folder / f"{stem}{suf}{ext}"
            if cand.exists():
                return cand
    return None


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise AlsegError(f"{path}: required folder ({what}) is missing")
    return path


# ---------------------------------------------------------------- ACDC release
def _detect_acdc(source: Path, opts) -> bool:
    return source.is_dir() and any(p.is_dir() and re.fullmatch(r"patient\d+", p.name)
                                   for p in source.iterdir())


@LAYOUTS.register("acdc", "ACDC release: patientNNN/patientNNN_frameFF.nii.gz + _gt + _scribble",
                  detect=_detect_acdc, unannotated=4)
def list_acdc(source: Path, opts) -> Listing:
    # class names from the ACDC release (the data README): 0 bg, 1 RV, 2 myocardium, 3 LV
    out = Listing([], classes={0: "background", 1: "RV", 2: "myocardium", 3: "LV"}, unannotated=4)
    for pdir in sorted(p for p in source.iterdir() if p.is_dir() and re.fullmatch(r"patient\d+", p.name)):
        for img in sorted(pdir.glob("*_frame[0-9][0-9].nii*")):
            stem = stem_of(img)
            mask = _find_pair(pdir, stem, ("_gt",), None)
            scrib = _find_pair(pdir, stem, ("_scribble",), None)
            if mask is None:
                out.problems.append((str(img), f"no mask {stem}_gt.nii.gz beside it"))
                continue
            out.specs.append(VolumeSpec(stem, pdir.name, [_ref(img)], _ref(mask),
                                        _ref(scrib) if scrib else None))
    return out


# ---------------------------------------------------------------- MSD / nnU-Net
def _detect_msd(source: Path, opts) -> bool:
    return source.is_dir() and (source / "imagesTr").is_dir()


def _dataset_json_classes(path: Path) -> Optional[Dict[int, str]]:
    if not path.exists():
        return None
    try:
        labels = json.loads(path.read_text()).get("labels")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise AlsegError(f"{path}: not a valid dataset.json ({exc})") from None
    if not isinstance(labels, dict):
        return None
    classes = {}
    for k, v in labels.items():
        # MSD: {"0": "background"}; nnU-Net v2: {"background": 0} (regions as lists: skipped)
        if str(k).isdigit():
            classes[int(k)] = str(v)
        elif isinstance(v, int):
            classes[v] = str(k)
    return classes or None


@LAYOUTS.register("msd", "MSD / nnU-Net: imagesTr/ + labelsTr/ (+ dataset.json); _0000 channels",
                  detect=_detect_msd)
def list_msd(source: Path, opts) -> Listing:
    images_dir = _require_dir(source / "imagesTr", "imagesTr")
    labels_dir = _require_dir(source / "labelsTr", "labelsTr")
    out = Listing([], classes=_dataset_json_classes(source / "dataset.json"))
    cases: Dict[str, Dict[int, Path]] = {}
    for f in _volume_files(images_dir):
        stem = stem_of(f)
        m = re.fullmatch(r"(.+)_(\d{4})", stem)     # nnU-Net: case_0000, case_0001 = channels
        case, chan = (m.group(1), int(m.group(2))) if m else (stem, 0)
        cases.setdefault(case, {})[chan] = f
    for case, chans in sorted(cases.items()):
        first = chans[min(chans)]
        if sorted(chans) != list(range(len(chans))):
            out.problems.append((str(first), f"channels {sorted(chans)} of case {case} are not 0..n-1"))
            continue
        label = _find_pair(labels_dir, case, ("",) + MASK_SUFFIXES, None)
        if label is None:
            out.problems.append((str(first), f"no label {case}{suffix_of(first)} in {labels_dir}"))
            continue
        patient = patient_of(case, opts.get("patient_regex")) or case
        out.specs.append(VolumeSpec(case, patient, [_ref(chans[c]) for c in sorted(chans)], _ref(label)))
    return out


# ---------------------------------------------------------------- DAVIS video frames
def _detect_davis(source: Path, opts) -> bool:
    return source.is_dir() and (source / "JPEGImages").is_dir()


@LAYOUTS.register("davis", "DAVIS video: JPEGImages/480p/<seq>/*.jpg + Annotations/480p/<seq>/*.png",
                  detect=_detect_davis)
def list_davis(source: Path, opts) -> Listing:
    res = opts.get("resolution") or "480p"
    images = _require_dir(source / "JPEGImages" / res, f"JPEGImages/{res}")
    annots = _require_dir(source / "Annotations" / res, f"Annotations/{res}")
    out = Listing([], classes={0: "background", 1: "foreground"})
    for seq in sorted(p for p in images.iterdir() if p.is_dir()):
        adir = annots / seq.name
        frames = frame_files(seq)
        if not frames:
            out.problems.append((str(seq), "no frames in this sequence"))
            continue
        if not adir.is_dir():
            out.problems.append((str(seq), f"no annotation folder {adir}"))
            continue
        have = {stem_of(p) for p in frame_files(adir)}
        missing = [p for p in frames if stem_of(p) not in have]
        if missing or len(have) != len(frames):
            what = f"frame {missing[0].name} has no annotation" if missing else "annotations without frames"
            out.problems.append((str(missing[0] if missing else adir), what))
            continue
        out.specs.append(VolumeSpec(seq.name, seq.name, [Ref("frames", str(seq))],
                                    Ref("frame-labels", str(adir)), slice_axis=0, binarize=True))
    return out


# ---------------------------------------------------------------- HDF5 volumes
def _detect_hdf5(source: Path, opts) -> bool:
    if source.is_file():
        return suffix_of(source) in HDF5
    return source.is_dir() and any(suffix_of(p) in HDF5 for p in source.iterdir())


@LAYOUTS.register("hdf5", "HDF5 volumes: *.h5 with image, label (and scribble) datasets",
                  detect=_detect_hdf5)
def list_hdf5(source: Path, opts) -> Listing:
    import h5py

    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if suffix_of(p) in HDF5)
    out = Listing([])
    for f in files:
        try:
            with h5py.File(f, "r") as fh:
                keys = set(fh.keys())
        except Exception as exc:
            out.problems.append((str(f), f"unreadable HDF5 file ({exc.__class__.__name__})"))
            continue
        if "image" not in keys:
            out.problems.append((str(f), f"no 'image' dataset (has: {', '.join(sorted(keys))})"))
            continue
        stem = stem_of(f)
        patient = patient_of(stem, opts.get("patient_regex"))
        if patient is None:
            out.problems.append((str(f), f"--patient-regex does not match {stem!r}"))
            continue
        out.specs.append(VolumeSpec(
            stem, patient, [Ref("hdf5", str(f), "image")],
            Ref("hdf5", str(f), "label") if "label" in keys else None,
            Ref("hdf5", str(f), "scribble") if "scribble" in keys else None))
    return out


# ---------------------------------------------------------------- CSV table
def _detect_table(source: Path, opts) -> bool:
    return source.is_file() and suffix_of(source) == ".csv"


@LAYOUTS.register("table", "CSV table with columns image, mask, scribble, patient, volume",
                  detect=_detect_table)
def list_table(source: Path, opts) -> Listing:
    out = Listing([])
    with open(source, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        raise AlsegError(f"{source}: expected a header with at least an 'image' column "
                         f"(optional: mask, scribble, patient, volume)")
    base = source.parent

    def resolve(value):
        if not value or not value.strip():
            return None
        p = Path(value.strip())
        return p if p.is_absolute() else base / p

    seen = set()
    for lineno, row in enumerate(rows, 2):
        img = resolve(row.get("image"))
        if img is None:
            out.problems.append((f"{source}:{lineno}", "empty 'image' cell"))
            continue
        paths = {k: resolve(row.get(k)) for k in ("mask", "scribble")}
        absent = [str(p) for p in [img, *paths.values()] if p is not None and not p.exists()]
        if absent:
            out.problems.append((absent[0], f"file not found (row {lineno} of {source})"))
            continue
        name = (row.get("volume") or "").strip() or stem_of(img)
        if name in seen:
            out.problems.append((f"{source}:{lineno}", f"volume name {name!r} is used twice"))
            continue
        seen.add(name)
        patient = (row.get("patient") or "").strip() or patient_of(name, opts.get("patient_regex")) or name
        out.specs.append(VolumeSpec(name, patient, [_ref(img)],
                                    _ref(paths["mask"]) if paths["mask"] else None,
                                    _ref(paths["scribble"]) if paths["scribble"] else None))
    return out


# ---------------------------------------------------------------- separate folders
def list_folders(images: Path, masks: Optional[Path], scribbles: Optional[Path], opts) -> Listing:
    """--images DIR --masks DIR [--scribbles DIR]: pair by file name or stem + suffix.

    The folders may be one and the same (``case.nii.gz`` beside ``case_gt.nii.gz``): files
    whose stem ends in a label suffix are then labels, not images.
    """
    _require_dir(images, "--images")
    if masks is not None:
        _require_dir(masks, "--masks")
    if scribbles is not None:
        _require_dir(scribbles, "--scribbles")
    out = Listing([])
    label_sufs = MASK_SUFFIXES + SCRIBBLE_SUFFIXES
    for f in _volume_files(images):
        stem = stem_of(f)
        if stem.endswith(label_sufs) and (masks == images or scribbles == images):
            continue
        mask = scrib = None
        if masks is not None:
            mask = _find_pair(masks, stem, MASK_SUFFIXES, None if masks == images else f.name)
            if mask is None:
                out.problems.append((str(f), f"pairs with no mask in {masks} (looked for the same "
                                              f"name or {stem}{{{','.join(MASK_SUFFIXES)}}})"))
                continue
        if scribbles is not None:
            scrib = _find_pair(scribbles, stem, SCRIBBLE_SUFFIXES,
                               None if scribbles in (images, masks) else f.name)
            if scrib is None:
                out.problems.append((str(f), f"pairs with no scribble in {scribbles}"))
                continue
        patient = patient_of(stem, opts.get("patient_regex"))
        if patient is None:
            out.problems.append((str(f), f"--patient-regex does not match {stem!r}"))
            continue
        out.specs.append(VolumeSpec(stem, patient, [_ref(f)], _ref(mask) if mask else None,
                                    _ref(scrib) if scrib else None))
    return out


# Detection tries the layouts with the most telling structure first: a folder laid out as
# ACDC or MSD stays so even when a stray .h5 or .csv file sits in it.
DETECTION_ORDER = ("acdc", "msd", "chaos", "mscmr", "davis", "hdf5", "table")


def detection_order() -> Tuple[str, ...]:
    missing = set(LAYOUTS.names()) - set(DETECTION_ORDER)
    if missing:
        raise AssertionError(f"layouts {sorted(missing)} have no place in DETECTION_ORDER")
    return DETECTION_ORDER


def list_source(source, opts) -> Tuple[str, Listing]:
    """Detect the layout of SOURCE (or use ``opts['images']``) and list its volumes."""
    if opts.get("images"):
        masks = opts.get("masks")
        scribbles = opts.get("scribbles")
        return "folders", list_folders(Path(opts["images"]), Path(masks) if masks else None,
                                       Path(scribbles) if scribbles else None, opts)
    if source is None:
        raise AlsegError("give a SOURCE folder/file, 'phantoms', or --images DIR --masks DIR")
    source = Path(source)
    if not source.exists():
        raise AlsegError(f"{source}: source not found")
    if source.is_dir() and not any(p for p in source.iterdir() if not p.name.startswith(".")):
        raise AlsegError(f"{source}: source folder is empty (no volumes found)")
    for name in detection_order():
        if LAYOUTS.info(name)["detect"](source, opts):
            return name, LAYOUTS.get(name)(source, opts)
    raise AlsegError(f"{source}: no known layout (ACDC, MSD imagesTr/labelsTr, CHAOS, MS-CMR, DAVIS, *.h5, a CSV "
                     f"table); for plain folders use --images DIR --masks DIR")
