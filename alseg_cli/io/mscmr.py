"""MS-CMR as released with its scribbles (CycleMix, Zhang & Zhuang 2022), and any dataset in
that "XXX_dataset" shape (the same authors ship ACDC so):

    train/images/subject13_DE.nii.gz     train/labels/subject13_DE_scribble.nii.gz
    val/images/subject1_DE.nii.gz        val/labels/subject1_DE_manual.nii.gz
    TestSet/images/subject3_DE.nii.gz    TestSet/labels/subject3_DE_manual.nii.gz

Labels are per volume: ``_manual`` is a full mask, ``_scribble`` scribbles; a volume may have
either, both or neither (training volumes carry scribbles only, validation and test volumes
masks only). The folders give the split (train / val / test) unless --split-file or
--split-fractions says otherwise. Patient = the name before its sequence suffix
(``subject13``). Label values of the MS-CMRSeg convention (600 RV, 200 myocardium, 500 LV
blood pool) become ACDC's class order 1 RV, 2 myocardium, 3 LV; values already 0..3 are kept.
"""
from __future__ import annotations

import re
from pathlib import Path

from .layouts import LAYOUTS, Listing, VolumeSpec, _find_pair, _ref, _volume_files, patient_of
from .readers import stem_of

SPLIT_FOLDERS = {"train": "train", "val": "val", "TestSet": "test", "test": "test"}
CLASSES = {0: "background", 1: "RV", 2: "myocardium", 3: "LV"}
MSCMRSEG_VALUES = {600: 1, 200: 2, 500: 3}


def _split_dirs(source: Path):
    return [(source / name, split) for name, split in SPLIT_FOLDERS.items() if (source / name / "images").is_dir()]


def _detect_mscmr(source: Path, opts) -> bool:
    dirs = _split_dirs(source) if source.is_dir() else []
    return bool(dirs) and any(split == "train" for _, split in dirs) and len(dirs) > 1


@LAYOUTS.register("mscmr", "MS-CMR / CycleMix: {train,val,TestSet}/{images,labels}, _manual masks and "
                  "_scribble scribbles per volume; the folders give the split", detect=_detect_mscmr)
def list_mscmr(source: Path, opts) -> Listing:
    out = Listing([], classes=dict(CLASSES), splits={})
    for folder, split in _split_dirs(source):
        labels = folder / "labels"
        for img in _volume_files(folder / "images"):
            stem = stem_of(img)
            mask = _find_pair(labels, stem, ("_manual", "_gt"), None) if labels.is_dir() else None
            scribble = _find_pair(labels, stem, ("_scribble",), None) if labels.is_dir() else None
            default = re.match(r"(subject\d+|patient\d+)", stem)
            patient = patient_of(stem, opts.get("patient_regex")) if opts.get("patient_regex") else (
                default.group(1) if default else stem)
            if patient is None:
                out.problems.append((str(img), f"--patient-regex does not match {stem!r}"))
                continue
            if out.splits.setdefault(patient, split) != split:
                out.problems.append((str(img), f"patient {patient} is in both {out.splits[patient]} and {split}"))
                continue
            out.specs.append(VolumeSpec(stem, patient, [_ref(img)], mask and _ref(mask),
                                        scribble and _ref(scribble), label_map=dict(MSCMRSEG_VALUES)))
    return out
