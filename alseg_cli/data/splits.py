"""Patient-level splits: seeded fractions or an explicit split file.

Splits are always by patient (never by slice or volume) so that two frames of one heart
never sit on both sides of a train/test boundary.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..errors import AlsegError

DEFAULT_SPLIT = "train=0.7,val=0.1,test=0.2"


def parse_split(text: str) -> Dict[str, float]:
    """``"train=0.7,val=0.1,test=0.2"`` -> {"train": 0.7, ...}; fractions must sum to 1."""
    fractions: Dict[str, float] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = float("nan")
        if not sep or not name or not np.isfinite(frac) or frac < 0:
            raise AlsegError(f"--split-fractions {text}: {part} is not NAME=FRACTION "
                             f"(e.g. {DEFAULT_SPLIT})")
        if name in fractions:
            raise AlsegError(f"--split-fractions {text}: split {name} is given twice")
        fractions[name] = frac
    total = sum(fractions.values())
    if not fractions or abs(total - 1.0) > 1e-6:
        raise AlsegError(f"--split-fractions {text}: fractions must sum to 1 (they sum to {total:g})")
    return fractions


def split_counts(n: int, fractions: Dict[str, float]) -> Dict[str, int]:
    """Largest-remainder rounding of n * fraction, so counts sum to exactly n.

    Ties in the remainders go to the split listed first, so the result is deterministic.
    """
    exact = {k: n * f for k, f in fractions.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    left = n - sum(counts.values())
    order = sorted(fractions, key=lambda k: (-(exact[k] - counts[k]), list(fractions).index(k)))
    for k in order[:left]:
        counts[k] += 1
    return counts


def random_split(patients: Sequence[str], fractions: Dict[str, float], seed: int) -> Dict[str, str]:
    """Assign each patient to a split: a seeded permutation of the sorted patient ids.

    Sorting first makes the result independent of the order the files were listed in.
    """
    ids: List[str] = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(ids))
    counts = split_counts(len(ids), fractions)
    out: Dict[str, str] = {}
    start = 0
    for name, count in counts.items():
        for i in order[start:start + count]:
            out[ids[i]] = name
        start += count
    return out


def load_split_file(path) -> Dict[str, str]:
    """A JSON object {patient: split} or a CSV with columns patient,split (header optional)."""
    path = Path(path)
    if not path.is_file():
        raise AlsegError(f"{path}: split file not found")
    text = path.read_text()
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AlsegError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise AlsegError(f"{path}: expected a JSON object {{patient: split name}}")
        mapping = {str(k): v for k, v in data.items()}
    else:
        mapping = {}
        for lineno, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise AlsegError(f"{path}:{lineno}: expected two columns patient,split; got {row}")
            patient, split = row[0].strip(), row[1].strip()
            if lineno == 1 and (patient.lower(), split.lower()) == ("patient", "split"):
                continue
            if patient in mapping and mapping[patient] != split:
                raise AlsegError(f"{path}:{lineno}: patient {patient!r} is listed in two splits")
            mapping[patient] = split
    if not mapping:
        raise AlsegError(f"{path}: split file is empty")
    return mapping


def apply_split_file(patients: Sequence[str], mapping: Dict[str, str], path) -> Dict[str, str]:
    """Restrict a split file to the patients present; every present patient must be listed."""
    missing = sorted(set(patients) - set(mapping))
    if missing:
        raise AlsegError(f"{path}: {len(missing)} patient(s) of the source are not in the split "
                         f"file, e.g. {missing[0]}; add them")
    return {p: mapping[p] for p in sorted(set(patients))}
