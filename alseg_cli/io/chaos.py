"""CHAOS (Kavur et al. 2021) as released: DICOM slices with one PNG mask per slice.

    Train_Sets/CT/<id>/DICOM_anon/i0000,0000b.dcm ...   Ground/liver_GT_000.png ...
    Train_Sets/MR/<id>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm   T1DUAL/Ground/*.png
    Train_Sets/MR/<id>/T2SPIR/DICOM_anon/*.dcm                      T2SPIR/Ground/*.png

Pairing follows the release, never slice positions: a CT mask ``liver_GT_NNN.png`` belongs to
the DICOM file whose name carries index NNN (``iNNNN,0000b.dcm``); an MR mask carries the stem
of its DICOM file. T1 in- and out-phase share one Ground folder whose names match one phase;
the other phase pairs by rank of the numbers in the file names (counts must agree). The paired
slices are then stacked in anatomical order (by position, as every DICOM folder), so the mask
follows its slice. Volumes: ``ct<id>``; ``mr<id>_t1in``, ``mr<id>_t1out`` (the two phases as two
volumes of one patient) and ``mr<id>_t2``. CT and MR are prepped apart (different classes).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import AlsegError
from .layouts import LAYOUTS, Listing, VolumeSpec
from .readers import READERS, RawArray, Ref, dicom_geometry, dicom_slices, order_dicom

CT_CLASSES = {0: "background", 1: "liver"}
MR_CLASSES = {0: "background", 1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen"}
MR_GREYS = (63, 126, 189, 252)      # liver, right kidney, left kidney, spleen
GREY_TOLERANCE = 10


def _modalities(source: Path) -> Dict[str, Path]:
    """{'CT': folder, 'MR': folder} found at SOURCE (Train_Sets, or its CT / MR folder)."""
    def patients(folder: Path) -> bool:
        return folder.is_dir() and any(p.is_dir() and p.name.isdigit() and any(
            (p / sub / "DICOM_anon").is_dir() for sub in ("", "T1DUAL", "T2SPIR")) for p in folder.iterdir())
    if source.name in ("CT", "MR") and patients(source):
        return {source.name: source}
    return {m: source / m for m in ("CT", "MR") if patients(source / m)}


def _detect_chaos(source: Path, opts) -> bool:
    return source.is_dir() and bool(_modalities(source))


def _ct_index(name: str) -> Optional[int]:
    m = re.match(r"i(\d+),", name)
    return int(m.group(1)) if m else None


def _numbers(name: str):
    return tuple(int(n) for n in re.findall(r"\d+", name))


def pair_masks(dicom_dir: Path, ground: Path, modality: str) -> Dict[str, Path]:
    """{DICOM file name: its mask PNG}, by the release's naming; mismatches are errors."""
    dcm = sorted(p.name for p in dicom_dir.iterdir() if p.suffix.lower() == ".dcm")
    png = sorted(p for p in ground.iterdir() if p.suffix.lower() == ".png")
    if len(dcm) != len(png):
        raise AlsegError(f"{ground}: {len(png)} mask PNG(s) for {len(dcm)} DICOM slice(s) in {dicom_dir}")
    if modality == "CT":
        by_index = {}
        for p in png:
            m = re.search(r"(\d+)\.png$", p.name, re.IGNORECASE)
            if not m:
                raise AlsegError(f"{p}: a CHAOS CT mask is named liver_GT_NNN.png")
            by_index[int(m.group(1))] = p
        out = {}
        for name in dcm:
            idx = _ct_index(name)
            if idx is None or idx not in by_index:
                raise AlsegError(f"{dicom_dir / name}: no mask liver_GT_{idx if idx is not None else 'NNN':03}"
                                 f".png in {ground} (CT masks pair with the index in the DICOM name)")
            out[name] = by_index[idx]
        return out
    stems = {p.stem: p for p in png}
    if all(Path(n).stem in stems for n in dcm):
        return {n: stems[Path(n).stem] for n in dcm}
    # the other T1 phase: pair by rank of the numbers in the names
    return dict(zip(sorted(dcm, key=_numbers), sorted(png, key=lambda p: _numbers(p.name))))


def grey_to_classes(grey: np.ndarray, modality: str, where) -> np.ndarray:
    """CT: non-zero = liver (1). MR: grey 63/126/189/252 (each +-10) = classes 1..4; other
    values are refused."""
    if modality == "CT":
        return (grey > 0).astype(np.uint8)
    out = np.zeros(grey.shape, np.uint8)
    known = grey == 0
    for k, level in enumerate(MR_GREYS, start=1):
        hit = np.abs(grey.astype(np.int32) - level) <= GREY_TOLERANCE
        out[hit] = k
        known |= hit
    if not known.all():
        bad = int(grey[~known][0])
        raise AlsegError(f"{where}: grey value {bad} is not one of CHAOS's mask levels 0, "
                         f"{', '.join(map(str, MR_GREYS))} (+-{GREY_TOLERANCE})")
    return out


def _read_mask(ref: Ref) -> RawArray:
    """ref.path: the Ground folder; ref.key: 'CT|<dicom dir>' or 'MR|<dicom dir>'."""
    from PIL import Image

    modality, _, dicom_dir = ref.key.partition("|")
    dicom_dir, ground = Path(dicom_dir), Path(ref.path)
    pairs = pair_masks(dicom_dir, ground, modality)
    slices = order_dicom(dicom_dir, dicom_slices(dicom_dir))      # the image's own order
    planes = []
    for s in slices:
        png = pairs[s["path"].name]
        grey = np.asarray(Image.open(png).convert("L"))
        if grey.shape != (s["size"][1], s["size"][0]):
            raise AlsegError(f"{png}: mask is {grey.shape[1]}x{grey.shape[0]}, its slice "
                             f"{s['path'].name} is {s['size'][0]}x{s['size'][1]}")
        planes.append(grey_to_classes(grey, modality, png))
    spacing, affine = dicom_geometry(slices)
    return RawArray(np.ascontiguousarray(np.stack(planes).transpose(2, 1, 0)), spacing, affine)


READERS.register("chaos-mask", "CHAOS Ground/ PNG masks, paired with their DICOM slices as released")(_read_mask)


@LAYOUTS.register("chaos", "CHAOS: CT/<id>/DICOM_anon + Ground PNGs; MR/<id>/T1DUAL (in/out phase), T2SPIR",
                  detect=_detect_chaos)
def list_chaos(source: Path, opts) -> Listing:
    found = _modalities(source)
    if len(found) > 1:
        raise AlsegError(f"{source}: holds CHAOS CT and MR, which label different organs; prep "
                         f"{source / 'CT'} and {source / 'MR'} into separate stores")
    (modality, root), = found.items()
    out = Listing([], classes=CT_CLASSES if modality == "CT" else MR_CLASSES)
    for pdir in sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        patient = f"{modality.lower()}{int(pdir.name):02d}"
        if modality == "CT":
            seqs = [(patient, pdir / "DICOM_anon", pdir / "Ground")]
        else:
            t1 = pdir / "T1DUAL"
            seqs = [(f"{patient}_t1in", t1 / "DICOM_anon" / "InPhase", t1 / "Ground"),
                    (f"{patient}_t1out", t1 / "DICOM_anon" / "OutPhase", t1 / "Ground"),
                    (f"{patient}_t2", pdir / "T2SPIR" / "DICOM_anon", pdir / "T2SPIR" / "Ground")]
        for name, dicom_dir, ground in seqs:
            if not dicom_dir.is_dir():
                out.problems.append((str(dicom_dir), "missing DICOM folder"))
                continue
            if not ground.is_dir():
                out.problems.append((str(ground), "missing Ground folder (no masks)"))
                continue
            out.specs.append(VolumeSpec(name, patient, [Ref("dicom", str(dicom_dir))],
                                        Ref("chaos-mask", str(ground), key=f"{modality}|{dicom_dir}")))
    return out
