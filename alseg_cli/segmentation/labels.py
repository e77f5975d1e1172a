"""The labelled set a segmentation model trains on, and the model-directory config.

Labels come as a selection manifest (kind "selection", key "labeled": {slice_id: round}),
a plain JSON list or text file of slice ids (one per line), or the literal ``all``
(every slice of the train split).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import AlsegError
from ..store import DatasetStore


def read_label_ids(labels, store: DatasetStore, train_split: str = "train") -> List[str]:
    if isinstance(labels, (list, tuple)):
        return [str(s) for s in labels]
    if isinstance(labels, dict):
        return _ids_from_obj(labels, "labels")
    text = str(labels)
    if text == "all":
        return store.slice_ids[store.indices(train_split)].tolist()
    if text.lstrip().startswith(("{", "[")):
        return _ids_from_obj(json.loads(text), "labels")
    path = Path(text)
    if not path.is_file():
        raise AlsegError(f"--labels {path}: file not found; pass a selection manifest, an id list, or 'all'")
    body = path.read_text()
    if body.lstrip().startswith(("{", "[")):
        try:
            return _ids_from_obj(json.loads(body), str(path))
        except json.JSONDecodeError as exc:
            raise AlsegError(f"--labels {path}: invalid JSON ({exc.msg})") from None
    return [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _ids_from_obj(obj, where: str) -> List[str]:
    if isinstance(obj, list):
        return [str(s) for s in obj]
    if isinstance(obj, dict):
        if obj.get("kind") not in (None, "selection"):
            raise AlsegError(f"{where}: a manifest of kind {obj.get('kind')!r} is not a labelled set; "
                             f"pass a selection manifest")
        if "labeled" in obj:
            return [str(s) for s in obj["labeled"]]
    raise AlsegError(f"{where}: expected a selection manifest with 'labeled' or a list of slice ids")


def recorded_dataset_hash(labels):
    """The dataset content hash a selection manifest recorded, or None (id lists, 'all')."""
    obj = labels
    if not isinstance(obj, dict):
        text = str(labels)
        if text == "all":
            return None
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                return None
            text = path.read_text()
            if not text.lstrip().startswith("{"):
                return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return None
    dataset = (obj.get("inputs") or {}).get("dataset") if isinstance(obj, dict) else None
    return dataset.get("sha256") if isinstance(dataset, dict) else None


def resolve_labels(labels, store: DatasetStore, train_split: str = "train",
                   allow_other_dataset: bool = False) -> np.ndarray:
    """Slice indices of the labelled set; empty sets, unknown ids, a selection made on another
    store (unless ``allow_other_dataset``) and slices outside the train split are one-line errors."""
    recorded = recorded_dataset_hash(labels)
    have = store.attrs.get("content_hash")
    if recorded and have and recorded != have and not allow_other_dataset:
        raise AlsegError(f"--labels: the selection was made on another dataset store (content hash "
                         f"{recorded[:12]}, {store.path} has {have[:12]}); select on this store, or pass "
                         f"--allow-other-dataset if the two hold the same slices")
    ids = read_label_ids(labels, store, train_split)
    if not ids:
        raise AlsegError(f"--labels {str(labels)[:80]}: the labelled set is empty; select some slices first")
    missing = [s for s in ids if s not in store.index_of]
    if missing:
        raise AlsegError(f"--labels: {len(missing)} slice id(s) are not in {store.path}, e.g. {missing[0]}; "
                         f"was the selection made on another dataset?")
    idx = np.unique(np.asarray([store.index_of[s] for s in ids], dtype=np.int64))
    outside = idx[store.split[idx] != train_split]
    if outside.size:
        where = sorted(set(store.split[outside].tolist()))
        raise AlsegError(f"--labels: {outside.size} labelled slice(s) are in the {'/'.join(where)} split, "
                         f"not {train_split!r}, e.g. {str(store.slice_ids[outside[0]])}; training on them "
                         f"would leak evaluation data")
    return idx


def labelled_with(idx: np.ndarray, store: DatasetStore, kind: str, labels) -> np.ndarray:
    """The labelled slices that carry a ``kind`` label ("masks" / "scribbles"). With ``all``
    the slices without one are left out (MS-CMR: scribbles exist on the training volumes only);
    a selection naming slices without one is an error, since its budget would not be what was
    trained on."""
    have = store.available(kind)[idx]
    if have.all():
        return idx
    if str(labels) == "all" and have.any():
        return idx[have]
    word = kind[:-1]
    missing = idx[~have]
    if not have.any():
        raise AlsegError(f"--labels: none of the {idx.size} labelled slice(s) has a {word} in {store.path} "
                         f"(e.g. {store.slice_ids[missing[0]]}); train with the label the volumes carry")
    raise AlsegError(f"--labels: {missing.size} of {idx.size} labelled slice(s) have no {word} in "
                     f"{store.path}, e.g. {store.slice_ids[missing[0]]}; select among slices that have one")


def validation_slices(store: DatasetStore, split: str) -> np.ndarray:
    """Slices of the validation split with a mask (Dice needs one); none is an error."""
    idx = store.indices(split)
    idx = idx[store.available("masks")[idx]]
    if idx.size == 0:
        raise AlsegError(f"{store.path}: no slice of the {split!r} split has a mask; validation Dice needs "
                         f"masks there (pass --val-split with a split that has them)")
    return idx


def check_compatible(config: Dict, store: DatasetStore, where) -> None:
    """A model trained for another class count, input size or channel count is refused."""
    for key, have in (("num_classes", store.num_classes), ("size", store.size), ("in_channels", store.channels)):
        if int(config.get(key, -1)) != int(have):
            raise AlsegError(f"{where}: model has {key}={config.get(key)} but {store.path} has {key}={have}; "
                             f"use a model trained on this dataset (or re-prep at the model's size)")
