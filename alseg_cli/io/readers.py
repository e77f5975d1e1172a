"""Readers: one array per file (or folder of frames), all in the same index convention.

Every reader returns a :class:`RawArray` whose spatial axes are in (x, y, z) index order,
the order nibabel uses, with a trailing channel axis when the image has channels.
SimpleITK arrays come out (z, y, x) and are transposed here, so "the last axis is the
usual through-plane axis" holds for every format and slice-axis detection can rely on it.
Any failure to read becomes one AlsegError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import AlsegError
from ..registry import Registry

READERS = Registry("reader")

NIFTI = (".nii.gz", ".nii")
ITK = (".mha", ".mhd", ".nrrd", ".nhdr")
HDF5 = (".h5", ".hdf5")
FRAMES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VOLUME_SUFFIXES = NIFTI + ITK + HDF5


@dataclass
class RawArray:
    data: np.ndarray                       # (X, Y, Z) or (X, Y, Z, C)
    spacing: Optional[Tuple[float, float, float]] = None  # per spatial axis, None if unknown
    affine: Optional[np.ndarray] = None    # 4x4, index (x, y, z) -> world
    channels: bool = False                 # True when the last axis is a channel axis


@dataclass(frozen=True)
class Ref:
    """Where one array lives: a reader name, a path and (HDF5) a dataset key."""

    reader: str
    path: str
    key: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.path}:{self.key}" if self.key else self.path


def suffix_of(path) -> str:
    name = Path(path).name.lower()
    for suf in NIFTI + ITK + HDF5 + FRAMES + (".dcm", ".csv", ".json"):
        if name.endswith(suf):
            return suf
    return Path(path).suffix.lower()


def stem_of(path) -> str:
    """File name without its (possibly double) suffix: ``case.nii.gz`` -> ``case``."""
    name = Path(path).name
    suf = suffix_of(path)
    return name[: -len(suf)] if suf and name.lower().endswith(suf) else name


def reader_for(path) -> Optional[str]:
    """The reader name for a file or folder, or None when no reader handles it."""
    p = Path(path)
    if p.is_dir():
        if any(f.suffix.lower() == ".dcm" for f in p.iterdir()):
            return "dicom"
        return None
    suf = suffix_of(p)
    return {**{s: "nifti" for s in NIFTI}, **{s: "itk" for s in ITK},
            **{s: "hdf5" for s in HDF5}}.get(suf)


def _fail(ref, exc: Exception) -> AlsegError:
    msg = str(exc).splitlines()[0][:200] if str(exc) else ""
    return AlsegError(f"{ref}: unreadable or truncated file ({exc.__class__.__name__}: {msg})")


def read(ref: Ref) -> RawArray:
    """Read one array; every low-level failure becomes an AlsegError naming the file."""
    if not Path(ref.path).exists():
        raise AlsegError(f"{ref.path}: file not found")
    fn = READERS.get(ref.reader)
    try:
        return fn(ref)
    except AlsegError:
        raise
    except Exception as exc:  # nibabel/ITK/h5py/zlib raise many types for bad files
        raise _fail(ref, exc) from None


def header(ref: Ref) -> Tuple[Tuple[int, ...], Optional[Tuple[float, ...]]]:
    """Spatial shape (x, y, z) and spacing without reading the voxels (where the format allows)."""
    fn = READERS.info(ref.reader).get("header")
    try:
        if fn is not None:
            return fn(ref)
        raw = read(ref)
        shape = raw.data.shape[:3]
        return tuple(int(s) for s in shape), raw.spacing
    except AlsegError:
        raise
    except Exception as exc:
        raise _fail(ref, exc) from None


# ---------------------------------------------------------------- NIfTI (nibabel)
def _nifti_header(ref: Ref):
    import nibabel as nib

    img = nib.load(ref.path)
    if len(img.shape) < 3:
        raise AlsegError(f"{ref}: expected a 3D volume, got shape {img.shape}")
    zooms = img.header.get_zooms()[:3]
    return tuple(int(s) for s in img.shape[:3]), tuple(float(z) for z in zooms)


def _read_nifti(ref: Ref) -> RawArray:
    import nibabel as nib

    img = nib.load(ref.path)
    data = np.asanyarray(img.dataobj)       # applies scl_slope/inter; reads (and checks) all bytes
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] > 16):
        raise AlsegError(f"{ref}: expected a 3D volume or 3D + channels, got shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    zooms = zooms + (1.0,) * (3 - len(zooms))
    return RawArray(data, zooms, np.asarray(img.affine, dtype=np.float64), data.ndim == 4)


READERS.register("nifti", "NIfTI .nii/.nii.gz via nibabel; 4D = channels last",
                 header=_nifti_header)(_read_nifti)


# ---------------------------------------------------------------- MHA/NRRD/DICOM (SimpleITK)
def _itk_to_raw(img) -> RawArray:
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)       # (z, y, x[, C]) -> transpose to (x, y, z[, C])
    channels = img.GetNumberOfComponentsPerPixel() > 1
    spatial = arr.ndim - (1 if channels else 0)
    if spatial == 2:
        arr = arr[None]
    arr = np.transpose(arr, (2, 1, 0, 3) if channels else (2, 1, 0))
    spacing = tuple(float(s) for s in img.GetSpacing()) + (1.0,) * (3 - img.GetDimension())
    d = np.asarray(img.GetDirection(), dtype=np.float64)
    dim = img.GetDimension()
    affine = np.eye(4)
    affine[:dim, :dim] = d.reshape(dim, dim) * np.asarray(spacing[:dim])[None, :]
    affine[:dim, 3] = img.GetOrigin()
    return RawArray(np.ascontiguousarray(arr), spacing[:3], affine, channels)


def _read_itk(ref: Ref) -> RawArray:
    import SimpleITK as sitk

    return _itk_to_raw(sitk.ReadImage(ref.path))


def _itk_header(ref: Ref):
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(ref.path)
    r.ReadImageInformation()
    size = tuple(int(s) for s in r.GetSize()) + (1,) * (3 - r.GetDimension())
    spacing = tuple(float(s) for s in r.GetSpacing()) + (1.0,) * (3 - r.GetDimension())
    return size[:3], spacing[:3]


DICOM_TAGS = {"position": "0020|0032", "orientation": "0020|0037", "instance": "0020|0013",
              "series": "0020|000e", "thickness": "0018|0050"}


def _dicom_numbers(reader, tag: str):
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        return [float(v) for v in reader.GetMetaData(tag).strip().split("\\") if v.strip()]
    except ValueError:
        return None


def dicom_slices(folder) -> List[Dict]:
    """Per .dcm file of a folder: path, position, orientation, instance number, size, series UID."""
    import SimpleITK as sitk

    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
    if not files:
        raise AlsegError(f"{folder}: no .dcm files in this folder")
    out = []
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(f))
        try:
            r.ReadImageInformation()
        except RuntimeError:
            raise AlsegError(f"{f}: not a readable DICOM file") from None
        inst = _dicom_numbers(r, DICOM_TAGS["instance"])
        out.append({"path": f, "position": _dicom_numbers(r, DICOM_TAGS["position"]),
                    "orientation": _dicom_numbers(r, DICOM_TAGS["orientation"]),
                    "instance": inst[0] if inst else None, "size": tuple(r.GetSize()[:2]),
                    "spacing": tuple(float(v) for v in r.GetSpacing()[:2]),
                    "thickness": (_dicom_numbers(r, DICOM_TAGS["thickness"]) or [None])[0],
                    "series": r.GetMetaData(DICOM_TAGS["series"]).strip()
                    if r.HasMetaDataKey(DICOM_TAGS["series"]) else ""})
    return out


def order_dicom(folder, slices: List[Dict]) -> List[Dict]:
    """DICOM slices as one volume, whatever series UIDs they carry: slices of one orientation
    and size, ordered by position along the slice normal (then instance number, then name).
    Several real series (orientations or sizes), or two slices at one position, are one-line
    errors naming what the folder holds."""
    def kind(s):
        o = s["orientation"]
        return (tuple(round(v, 4) for v in o) if o and len(o) == 6 else None, s["size"])

    groups: Dict = {}
    for s in slices:
        groups.setdefault(kind(s), []).append(s)
    if len(groups) > 1:
        parts = [f"{len(g)} slice(s) {g[0]['size'][0]}x{g[0]['size'][1]}"
                 + (f" orientation {','.join(f'{v:g}' for v in k[0])}" if k[0] else "")
                 + (f" series {g[0]['series'][-12:]}" if g[0]["series"] else "")
                 for k, g in groups.items()]
        raise AlsegError(f"{folder}: holds {len(groups)} DICOM series of different orientation or size "
                         f"({'; '.join(parts)}); put each series in its own folder")
    row, col, normal = _dicom_axes(slices[0])
    have_pos = all(s["position"] and len(s["position"]) == 3 for s in slices)
    for s in slices:
        s["depth"] = float(np.dot(s["position"], normal)) if have_pos else None
    out = sorted(slices, key=lambda s: (s["depth"] or 0.0,
                                        s["instance"] if s["instance"] is not None else float("inf"),
                                        s["path"].name))
    for a, b in zip(out, out[1:]):
        if have_pos and abs(b["depth"] - a["depth"]) < 1e-4:
            raise AlsegError(f"{folder}: {a['path'].name} and {b['path'].name} lie at the same position: the "
                             f"folder holds more than one series (echoes, phases or repeats); put each in "
                             f"its own folder")
    return out


def _dicom_axes(s: Dict):
    o = s["orientation"]
    row, col = (np.asarray(o[:3]), np.asarray(o[3:])) if o and len(o) == 6 else (np.eye(3)[0], np.eye(3)[1])
    return row, col, np.cross(row, col)


def dicom_geometry(ordered: List[Dict]):
    """(spacing, affine) of slices in ``order_dicom`` order: z spacing from the positions
    (median gap), else SliceThickness, else 1."""
    row, col, normal = _dicom_axes(ordered[0])
    depth = [s["depth"] for s in ordered]
    if len(ordered) > 1 and None not in depth:
        dz = float(np.median(np.diff(depth)))
    else:
        dz = float(ordered[0]["thickness"] or 1.0)
    sx, sy = ordered[0]["spacing"]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row * sx, col * sy, normal * dz
    affine[:3, 3] = ordered[0]["position"] if None not in depth else 0.0
    return (sx, sy, abs(dz)), affine


def stack_dicom(folder, slices: List[Dict]) -> RawArray:
    """One (x, y, z) volume from a folder's DICOM slices (``order_dicom``'s order)."""
    import SimpleITK as sitk

    ordered = order_dicom(folder, slices)
    planes = [sitk.GetArrayFromImage(sitk.ReadImage(str(s["path"]))) for s in ordered]
    arr = np.stack([p.reshape(p.shape[-2:]) for p in planes])          # (z, y, x)
    spacing, affine = dicom_geometry(ordered)
    return RawArray(np.ascontiguousarray(arr.transpose(2, 1, 0)), spacing, affine, False)


def _read_dicom(ref: Ref) -> RawArray:
    return stack_dicom(ref.path, dicom_slices(ref.path))


READERS.register("itk", "MHA/MHD/NRRD via SimpleITK", header=_itk_header)(_read_itk)
READERS.register("dicom", "a folder of .dcm slices stacked by position (SimpleITK); several series are an "
                 "error")(_read_dicom)


# ---------------------------------------------------------------- HDF5 (h5py)
def _read_hdf5(ref: Ref) -> RawArray:
    import h5py

    with h5py.File(ref.path, "r") as fh:
        if ref.key not in fh:
            raise AlsegError(f"{ref.path}: no dataset {ref.key!r} (has: {', '.join(fh.keys())})")
        data = fh[ref.key][()]
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise AlsegError(f"{ref}: expected a 3D dataset, got shape {data.shape}")
    return RawArray(np.asarray(data), None, None, False)


def _hdf5_header(ref: Ref):
    import h5py

    with h5py.File(ref.path, "r") as fh:
        if ref.key not in fh:
            raise AlsegError(f"{ref.path}: no dataset {ref.key!r} (has: {', '.join(fh.keys())})")
        shape = fh[ref.key].shape
    shape = (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)
    return tuple(int(s) for s in shape[:3]), None


READERS.register("hdf5", "HDF5 datasets image/label/scribble via h5py",
                 header=_hdf5_header)(_read_hdf5)


# ---------------------------------------------------------------- frames (Pillow)
def frame_files(folder) -> list:
    return sorted(p for p in Path(folder).iterdir() if suffix_of(p) in FRAMES)


def _read_frames(ref: Ref, label: bool) -> RawArray:
    """A folder of frames -> (T, H, W, 3) RGB images, or (T, H, W) label indices.

    Frames are the slices, so axis 0 is the slice axis; prep forces it for video layouts.
    """
    from PIL import Image

    files = frame_files(ref.path)
    if not files:
        raise AlsegError(f"{ref.path}: no image frames in this folder")
    stack = []
    for f in files:
        try:
            with Image.open(f) as im:
                # palette PNGs hold class indices; keep them, never convert to RGB
                arr = np.asarray(im if label and im.mode in ("P", "L", "1", "I") else
                                 (im.convert("L") if label else im.convert("RGB")))
        except Exception as exc:
            raise _fail(Ref(ref.reader, str(f)), exc) from None
        if stack and arr.shape != stack[0].shape:
            raise AlsegError(f"{f}: frame shape {arr.shape} differs from the first frame's "
                             f"{stack[0].shape}")
        stack.append(arr)
    data = np.stack(stack)
    return RawArray(data, None, None, not label)


READERS.register("frames", "a folder of RGB frames (JPEG/PNG) via Pillow")(
    lambda ref: _read_frames(ref, label=False))
READERS.register("frame-labels", "a folder of label frames (palette/grey PNG) via Pillow")(
    lambda ref: _read_frames(ref, label=True))
