"""Import embeddings computed elsewhere (`alseg embed --from FILE`), matched by slice_id.

Formats:
  .npz   arrays ``ids`` (or slice_id / filenames) and ``vectors`` (or embeddings)
  .npy   a (N, D) array, with ``--ids FILE`` (one id per line, or a JSON list) or, only when
         asked with ``--assume-order``, in the dataset's slice order
  .csv   ``id,x0,x1,...`` with or without a header row; Lightly's ``filenames,embedding_0,..
         [,labels]`` (filenames such as ``patient001_frame01_003.png`` are matched to
         ``patient001_frame01:003`` by comparing their alphanumeric runs)
  zarr   a group with ``vectors``/``embeddings`` and ``slice_id``/``ids`` (an alseg embeddings
         store works), or a bare (N, D) array with ``--ids`` / ``--assume-order``
Every problem is one line naming the file: missing, duplicated or unknown ids, NaN/inf,
ragged or non-numeric rows, wrong dimensions.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import AlsegError

ID_KEYS = ("ids", "slice_id", "slice_ids", "filenames", "id")
VEC_KEYS = ("vectors", "embeddings", "embedding", "features")


def _key(name: str) -> str:
    """Alphanumeric runs of a file name or id without its extension: 'a/b_01.png' -> 'a_b_01'."""
    stem = re.sub(r"\.(png|jpe?g|tiff?|bmp|npy|nii(\.gz)?)$", "", str(name).strip(), flags=re.I)
    return "_".join(re.findall(r"[A-Za-z0-9]+", stem)).lower()


def _pick(keys, wanted, path, what):
    for k in wanted:
        if k in keys:
            return k
    return None


def _read_ids_file(path) -> list:
    path = Path(path)
    if not path.is_file():
        raise AlsegError(f"{path}: ids file not found")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            return [str(x) for x in json.loads(text)]
        except json.JSONDecodeError as exc:
            raise AlsegError(f"{path}: not a JSON list of ids ({exc.msg})") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _floats(rows, path, first_line: int) -> np.ndarray:
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise AlsegError(f"{path}: rows have different numbers of values ({sorted(widths)}); "
                         f"every row needs the same dimension")
    try:
        return np.asarray(rows, dtype=np.float64).astype(np.float32)
    except ValueError:
        for i, r in enumerate(rows):
            for v in r:
                try:
                    float(v)
                except ValueError:
                    raise AlsegError(f"{path}: line {first_line + i}: {v!r} is not a number") from None
        raise


def _read_csv(path: Path) -> Tuple[Optional[list], np.ndarray, str]:
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise AlsegError(f"{path}: empty CSV")
    head = [c.strip() for c in rows[0]]
    if "filenames" in head and any(c.startswith("embedding_") for c in head):   # Lightly
        cols = [i for i, c in enumerate(head) if c.startswith("embedding_")]
        fi = head.index("filenames")
        body = rows[1:]
        return [r[fi] for r in body], _floats([[r[i] for i in cols] for r in body], path, 2), "lightly-csv"

    def numeric(cells):
        try:
            [float(c) for c in cells]
            return True
        except ValueError:
            return False
    body = rows[1:] if not numeric(head[1:]) else rows
    if not body:
        raise AlsegError(f"{path}: CSV has a header but no rows")
    return [r[0] for r in body], _floats([r[1:] for r in body], path, 1 + (body is not rows)), "csv"


def _read_zarr(path: Path):
    import zarr
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise AlsegError(f"{path}: not a readable zarr store ({exc.__class__.__name__})") from None
    if isinstance(node, zarr.Array):
        return None, np.asarray(node[:]), "zarr-array"
    keys = set(node.array_keys())
    vk, ik = _pick(keys, VEC_KEYS, path, "vectors"), _pick(keys, ID_KEYS, path, "ids")
    if vk is None:
        raise AlsegError(f"{path}: zarr group has no vectors array (looked for {', '.join(VEC_KEYS)})")
    ids = None if ik is None else [str(x) for x in node[ik][:].tolist()]
    return ids, np.asarray(node[vk][:]), "zarr"


def read_vectors(path) -> Tuple[Optional[list], np.ndarray, str]:
    """(ids or None, (N, D) array, format name) from any supported file."""
    path = Path(path)
    if not path.exists():
        raise AlsegError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zarr":
        return _read_zarr(path)
    if suffix == ".npy":
        try:
            return None, np.load(path, allow_pickle=False), "npy"
        except Exception as exc:
            raise AlsegError(f"{path}: not a readable .npy array ({exc.__class__.__name__})") from None
    if suffix == ".npz":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise AlsegError(f"{path}: not a readable .npz file ({exc.__class__.__name__})") from None
        vk, ik = _pick(data.files, VEC_KEYS, path, "vectors"), _pick(data.files, ID_KEYS, path, "ids")
        if vk is None:
            raise AlsegError(f"{path}: .npz has no vectors (arrays: {', '.join(data.files)}); "
                             f"save it with np.savez(PATH, ids=ids, vectors=vectors)")
        return None if ik is None else [str(x) for x in data[ik].tolist()], data[vk], "npz"
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    raise AlsegError(f"{path}: unsupported format {suffix!r}; use .npy, .npz, .csv or a zarr store")


def load_external(path, dataset_ids: Sequence[str], wanted_ids: Sequence[str], ids_file=None,
                  assume_order: bool = False) -> Tuple[np.ndarray, dict]:
    """Vectors of ``path`` ordered as ``wanted_ids`` (a subset of ``dataset_ids``)."""
    path = Path(path)
    ids, vectors, fmt = read_vectors(path)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise AlsegError(f"{path}: vectors must be a 2-D (slices, dim) array with dim >= 1; got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.number):
        raise AlsegError(f"{path}: vectors are {vectors.dtype}, not numbers")
    vectors = vectors.astype(np.float32)
    if ids_file is not None:
        ids = _read_ids_file(ids_file)
    elif ids is None:
        if not assume_order:
            raise AlsegError(f"{path}: {fmt} has no slice ids; pass --ids FILE (one slice_id per line) "
                             f"or, if its rows follow the dataset's slice order, --assume-order")
        ids = list(dataset_ids)
    if len(ids) != vectors.shape[0]:
        raise AlsegError(f"{path}: {vectors.shape[0]} vectors but {len(ids)} ids; they must match one to one")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise AlsegError(f"{path}: {bad.size} vector(s) contain NaN or inf, e.g. the one for {ids[bad[0]]}")
    seen, dups = set(), []
    for s in ids:
        (dups.append(s) if s in seen else seen.add(s))
    if dups:
        raise AlsegError(f"{path}: {len(dups)} duplicated id(s), e.g. {dups[0]}; each slice needs one vector")
    exact = {s: s for s in dataset_ids}
    by_key = {}
    for s in dataset_ids:
        by_key.setdefault(_key(s), s)
    matched = [exact.get(str(s)) or by_key.get(_key(s)) for s in ids]
    unknown = [s for s, m in zip(ids, matched) if m is None]
    if unknown:
        raise AlsegError(f"{path}: {len(unknown)} id(s) are not slices of the dataset, e.g. {unknown[0]}")
    if len(set(matched)) != len(matched):
        raise AlsegError(f"{path}: several ids name the same dataset slice (after matching file names); "
                         f"use exact slice ids")
    row_of = {m: i for i, m in enumerate(matched)}
    missing = [s for s in wanted_ids if s not in row_of]
    if missing:
        raise AlsegError(f"{path}: {len(missing)} dataset slice(s) have no vector, e.g. {missing[0]}")
    rows = np.asarray([row_of[s] for s in wanted_ids], dtype=np.int64)
    info = {"spec": str(path.resolve()), "kind": "external", "gcl": False, "groups": [], "format": fmt,
            "ids_file": None if ids_file is None else str(Path(ids_file).resolve()),
            "assume_order": bool(assume_order and ids_file is None and fmt in ("npy", "zarr-array"))}
    return vectors[rows], info
