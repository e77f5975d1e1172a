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


def resolve_labels(labels, store: DatasetStore, train_split: str = "train") -> np.ndarray:
    """Slice indices of the labelled set; empty sets and unknown ids are one-line errors."""
    ids = read_label_ids(labels, store, train_split)
    if not ids:
        raise AlsegError(f"--labels {str(labels)[:80]}: the labelled set is empty; select some slices first")
    missing = [s for s in ids if s not in store.index_of]
    if missing:
        raise AlsegError(f"--labels: {len(missing)} slice id(s) are not in {store.path}, e.g. {missing[0]!r}; "
                         f"was the selection made on another dataset?")
    return np.unique(np.asarray([store.index_of[s] for s in ids], dtype=np.int64))


def check_compatible(config: Dict, store: DatasetStore, where) -> None:
    """A model trained for another class count, input size or channel count is refused."""
    for key, have in (("num_classes", store.num_classes), ("size", store.size), ("in_channels", store.channels)):
        if int(config.get(key, -1)) != int(have):
            raise AlsegError(f"{where}: model has {key}={config.get(key)} but {store.path} has {key}={have}; "
                             f"use a model trained on this dataset (or re-prep at the model's size)")
