"""Zarr v3 layouts: the dataset store and the embeddings store.

Dataset store (``attrs.format == "alseg.dataset"``):
    images    (N, C, H, W) float32, one slice per chunk, 64 slices per shard file
    masks     (N, H, W) uint8          (when the source has masks)
    scribbles (N, H, W) uint8          (when the source has scribbles)
    mask_available, scribble_available (N,) bool, only when some volumes lack that label
                                       (MS-CMR: scribbles on train, masks on val/test)
    slice_id, patient, volume, split   (N,) strings; z (N,) int32
    native/<k>/mask                    per volume k, native-resolution mask (Z, H0, W0)
    attrs: format, version, num_classes, classes, unannotated, channels, size,
           volumes (list of {name, patient, shape, spacing, affine, source, native}),
           source, preprocessing, content_hash, annotations and earlier_content_hashes
           (what `alseg import-labels` added, and the hashes the store had before)
Embeddings store (``attrs.format == "alseg.embeddings"``):
    vectors (N, D) float32 or float16; slice_id (N,) strings; attrs: encoder, dataset.

Strings are zarr v3 variable-length UTF-8, readable by any zarr v3 library.

Integrity (integrity.py): each store lists the chunk files it wrote; opening a store
checks the listing, and ``verify_store`` (``alseg verify``) also reads every array and
recomputes the content hash.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import zarr

from .atomic import atomic_path
from .data.resize import resize_images, resize_labels
from .data.volume import Volume
from .errors import AlsegError
from .integrity import CHUNKS_FILE, HASH_SKIP, check_chunks, chunk_files, damaged, finish_store, peek_format
from .manifest import hash_tree

DATASET_FORMAT = "alseg.dataset"
PSEUDO_FORMAT = "alseg.pseudo-labels"
EMBEDDINGS_FORMAT = "alseg.embeddings"
STORE_VERSION = 1
SHARD_SLICES = 64
LINEAGE = "earlier_content_hashes"


def earlier_hashes(path) -> List[str]:
    """The content hashes a dataset store had before `alseg import-labels` rewrote it."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return []
    return list(json.loads(meta.read_text()).get("attributes", {}).get(LINEAGE, []))


def _strings(group, name: str, values: Sequence[str]) -> None:
    arr = group.create_array(name, shape=(len(values),), dtype=zarr.dtype.VariableLengthUTF8(),
                             chunks=(max(1, len(values)),))
    if len(values):
        arr[:] = np.asarray([str(v) for v in values], dtype=object)


def write_dataset(path, volumes: Iterable[Volume], size: int, split: Dict[str, str],
                  attrs: Dict, force: bool = False, on_volume=None) -> Dict:
    """Resize every volume's slices to ``size`` and write the dataset store atomically.

    ``split`` maps patient -> split name. ``attrs`` adds num_classes, unannotated, source,
    preprocessing. Returns the store's attributes. ``on_volume(volume)`` is called after
    each volume (progress bars).
    """
    images, masks, scribbles = [], [], []      # label lists hold None for a volume without
    ids, patients, vols, zs, splits, vol_meta = [], [], [], [], [], []
    with atomic_path(path, force=force) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        native = root.create_group("native")
        for k, vol in enumerate(volumes):
            z = vol.image.shape[0]
            images.append(resize_images(vol.image, size))
            masks.append(None if vol.mask is None else resize_labels(vol.mask, size))
            scribbles.append(None if vol.scribble is None else resize_labels(vol.scribble, size))
            if vol.native_mask is not None:
                native.create_group(str(k)).create_array(
                    "mask", data=np.ascontiguousarray(vol.native_mask, dtype=np.uint8),
                    chunks=(1,) + vol.native_mask.shape[1:])
            ids += [f"{vol.name}:{i:03d}" for i in range(z)]
            patients += [vol.patient] * z
            vols += [vol.name] * z
            zs += list(range(z))
            splits += [split.get(vol.patient, "train")] * z
            vol_meta.append({
                "name": vol.name, "patient": vol.patient, "index": k,
                "shape": [int(s) for s in vol.image.shape[:1] + vol.image.shape[2:]],
                "spacing": None if vol.spacing is None else [float(s) for s in vol.spacing],
                "affine": None if vol.affine is None else np.asarray(vol.affine).tolist(),
                "source": vol.source, "native": vol.native_mask is not None,
                "has_mask": vol.mask is not None, "has_scribble": vol.scribble is not None, **vol.meta,
            })
            if on_volume:
                on_volume(vol)
        if not images:
            raise AlsegError("no volumes to write: the source is empty")
        img = np.concatenate(images)
        c = img.shape[1]
        # One slice per chunk (random access), many chunks per shard file (few files).
        per_shard = max(1, min(SHARD_SLICES, img.shape[0]))
        root.create_array("images", data=img, chunks=(1, c, size, size),
                          shards=(per_shard, c, size, size))
        # a volume without a label kind gets a filler (0; scribbles: the unannotated value) and
        # the per-slice availability array says so; every reader of labels checks it
        fills = {"masks": 0, "scribbles": _scribble_fill(attrs)}
        labelled = {}
        for name, arrays in (("masks", masks), ("scribbles", scribbles)):
            if all(a is None for a in arrays):
                continue
            have = np.concatenate([np.full(im.shape[0], a is not None) for a, im in zip(arrays, images)])
            data = np.concatenate([a if a is not None else np.full((im.shape[0], size, size), fills[name],
                                                                   np.uint8) for a, im in zip(arrays, images)])
            root.create_array(name, data=data, chunks=(1, size, size), shards=(per_shard, size, size))
            if not have.all():
                root.create_array(AVAILABLE[name], data=have, chunks=(len(have),))
            labelled[name] = {sp: int(sum(1 for x, h in zip(splits, have) if x == sp and h))
                              for sp in sorted(set(splits))}
        for name, values in (("slice_id", ids), ("patient", patients), ("volume", vols), ("split", splits)):
            _strings(root, name, values)
        root.create_array("z", data=np.asarray(zs, dtype=np.int32), chunks=(len(zs),))
        meta = {
            "format": DATASET_FORMAT, "version": STORE_VERSION,
            "channels": int(c), "size": int(size), "num_slices": int(img.shape[0]),
            "volumes": vol_meta, "has_masks": any(m is not None for m in masks),
            "has_scribbles": any(m is not None for m in scribbles),
            "splits": {s: int(sum(1 for x in splits if x == s)) for s in sorted(set(splits))},
            "labelled_slices": labelled,
            **attrs,
        }
        root.attrs.update(meta)
        meta["content_hash"] = finish_store(tmp, root)
    return meta


AVAILABLE = {"masks": "mask_available", "scribbles": "scribble_available"}


def _scribble_fill(attrs: Dict) -> int:
    value = attrs.get("unannotated")
    return int(value) if value is not None and 0 <= int(value) <= 255 else 255


def _open_group(path, fmt: str):
    path = Path(path)
    if not path.exists():
        raise AlsegError(f"{path}: no such store")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for non-stores
        meta = path / "zarr.json"
        if meta.is_file() and not _parses(meta):
            raise damaged(path, "its zarr.json is unreadable (truncated?)", fmt) from None
        raise AlsegError(f"{path}: not a zarr store ({exc.__class__.__name__})") from None
    attrs = dict(root.attrs)
    if attrs.get("format") != fmt:
        raise AlsegError(f"{path}: not an {fmt} store (format {attrs.get('format')!r})")
    if attrs.get("version") != STORE_VERSION:
        raise AlsegError(f"{path}: {fmt} version {attrs.get('version')} is not supported "
                         f"(this alseg reads version {STORE_VERSION})")
    check_chunks(path, fmt)
    return root, attrs


def _parses(meta: Path) -> bool:
    try:
        json.loads(meta.read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


class _Store:
    """Shared read plumbing: every array access names the store and array when it fails."""

    path: Path
    root: object
    attrs: Dict

    def array(self, name: str):
        try:
            return self.root[name]
        except KeyError:
            raise AlsegError(f"{self.path}: has no array {name!r}") from None
        except Exception as exc:
            raise damaged(self.path, f"array {name!r} metadata is unreadable ({exc.__class__.__name__})",
                          self.attrs.get("format")) from None

    def read(self, name: str, idx=None) -> np.ndarray:
        arr = self.array(name)
        try:
            return arr[:] if idx is None else arr.get_orthogonal_selection((np.asarray(idx),))
        except (IndexError, TypeError):
            raise
        except Exception as exc:
            raise damaged(self.path, f"array {name!r} cannot be read ({exc.__class__.__name__})",
                          self.attrs.get("format")) from None

    def strings(self, name: str) -> np.ndarray:
        return np.array(self.read(name).tolist(), dtype=str)


class DatasetStore(_Store):
    """Read access to a dataset store; per-slice metadata is loaded once, arrays lazily."""

    def __init__(self, path):
        self.path = Path(path)
        self.root, self.attrs = _open_group(path, DATASET_FORMAT)

    # per-slice metadata
    @cached_property
    def slice_ids(self) -> np.ndarray:
        return self.strings("slice_id")

    @cached_property
    def patients(self) -> np.ndarray:
        return self.strings("patient")

    @cached_property
    def volumes(self) -> np.ndarray:
        return self.strings("volume")

    @cached_property
    def split(self) -> np.ndarray:
        return self.strings("split")

    @cached_property
    def z(self) -> np.ndarray:
        return self.read("z")

    @cached_property
    def index_of(self) -> Dict[str, int]:
        return {s: i for i, s in enumerate(self.slice_ids)}

    def __len__(self) -> int:
        return int(self.attrs["num_slices"])

    @property
    def num_classes(self) -> int:
        return int(self.attrs.get("num_classes", 0))

    @property
    def size(self) -> int:
        return int(self.attrs["size"])

    @property
    def channels(self) -> int:
        return int(self.attrs["channels"])

    @property
    def unannotated(self) -> Optional[int]:
        return self.attrs.get("unannotated")

    @property
    def has_masks(self) -> bool:
        return "masks" in self.root

    @property
    def has_scribbles(self) -> bool:
        return "scribbles" in self.root

    def available(self, kind: str) -> np.ndarray:
        """(N,) bool: which slices carry a real label of ``kind`` ("masks" or "scribbles")."""
        if kind not in AVAILABLE:
            raise ValueError(f"unknown label kind {kind!r}")
        if kind not in self.root:
            return np.zeros(len(self), dtype=bool)
        if AVAILABLE[kind] in self.root:
            return self.read(AVAILABLE[kind]).astype(bool)
        return np.ones(len(self), dtype=bool)

    def indices(self, split: Optional[str] = None) -> np.ndarray:
        """Slice indices of a split (all slices when None); an absent split is an error."""
        if split is None:
            return np.arange(len(self))
        idx = np.flatnonzero(self.split == split)
        if idx.size == 0:
            have = ", ".join(sorted(set(self.split.tolist())))
            raise AlsegError(f"{self.path}: split {split!r} has no slices (splits: {have})")
        return idx

    def ids_to_indices(self, ids: Iterable[str]) -> np.ndarray:
        ids = list(ids)
        missing = [s for s in ids if s not in self.index_of]
        if missing:
            raise AlsegError(f"{len(missing)} slice id(s) are not in {self.path}, e.g. {missing[0]}")
        return np.asarray([self.index_of[s] for s in ids], dtype=np.int64)

    # arrays
    def images(self, idx=None) -> np.ndarray:
        return self.read("images", idx)

    def masks(self, idx=None) -> np.ndarray:
        if not self.has_masks:
            raise AlsegError(f"{self.path} has no masks")
        return self.read("masks", idx)

    def scribbles(self, idx=None) -> np.ndarray:
        if not self.has_scribbles:
            raise AlsegError(f"{self.path} has no scribbles; prep a source with scribbles "
                             f"or use --supervision full")
        return self.read("scribbles", idx)

    # per volume
    @property
    def volume_info(self) -> List[Dict]:
        return self.attrs["volumes"]

    def native_mask(self, volume_index: int) -> np.ndarray:
        return self.read(f"native/{volume_index}/mask")

    def volume_slices(self, name: str) -> np.ndarray:
        """Indices of a volume's slices ordered by z."""
        idx = np.flatnonzero(self.volumes == name)
        return idx[np.argsort(self.z[idx], kind="stable")]


def write_embeddings(path, vectors: np.ndarray, slice_ids: Sequence[str], attrs: Dict,
                     force: bool = False) -> Dict:
    """Write an embeddings store atomically (vectors float32 or float16)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(slice_ids):
        raise AlsegError(f"embeddings must be (N, D) with one row per slice id; got {vectors.shape} "
                         f"for {len(slice_ids)} ids")
    if vectors.dtype not in (np.float16, np.float32):
        vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise AlsegError("embeddings contain NaN or inf values")
    rows = max(1, min(len(vectors), (1 << 24) // max(1, vectors.shape[1] * vectors.itemsize)))
    return _write_rows(path, EMBEDDINGS_FORMAT, "vectors", vectors, rows, slice_ids,
                       {"dim": int(vectors.shape[1]), "dtype": str(vectors.dtype), **attrs}, force)


def _write_rows(path, fmt: str, name: str, data: np.ndarray, rows: int, slice_ids, attrs: Dict, force: bool) -> Dict:
    """A store of one array with a row per slice id (chunks of ``rows``), written atomically."""
    with atomic_path(path, force=force) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        root.create_array(name, data=data, chunks=(rows,) + data.shape[1:])
        _strings(root, "slice_id", list(slice_ids))
        meta = {"format": fmt, "version": STORE_VERSION, "num": int(data.shape[0]), **attrs}
        root.attrs.update(meta)
        meta["content_hash"] = finish_store(tmp, root)
    return meta


class _RowStore(_Store):
    """A store of rows keyed by slice id (embeddings, pseudo-labels)."""
    FORMAT = ""

    def __init__(self, path):
        self.path = Path(path)
        self.root, self.attrs = _open_group(path, self.FORMAT)

    @cached_property
    def slice_ids(self) -> np.ndarray:
        return self.strings("slice_id")


class EmbeddingsStore(_RowStore):
    FORMAT = EMBEDDINGS_FORMAT

    def vectors(self) -> np.ndarray:
        return self.read("vectors")


def write_pseudo(path, masks: np.ndarray, slice_ids: Sequence[str], attrs: Dict, force: bool = False) -> Dict:
    """Write a pseudo-labels store atomically: (N, H, W) uint8 masks of N slices, made by a
    model (k-NN label propagation), with the slice ids they belong to."""
    masks = np.asarray(masks, dtype=np.uint8)
    if masks.ndim != 3 or masks.shape[0] != len(slice_ids):
        raise AlsegError(f"pseudo-masks must be (N, H, W) with one per slice id; got {masks.shape} "
                         f"for {len(slice_ids)} ids")
    return _write_rows(path, PSEUDO_FORMAT, "masks", masks, max(1, min(len(masks), 64)), slice_ids, attrs, force)


class PseudoStore(_RowStore):
    FORMAT = PSEUDO_FORMAT

    def masks(self) -> np.ndarray:
        return self.read("masks")


def verify_store(path) -> Dict:
    """Check a dataset or embeddings store completely: format, chunk listing, every array
    readable, and the content hash recomputed. Returns a summary; damage is an AlsegError."""
    path = Path(path)
    if not path.exists():
        raise AlsegError(f"{path}: no such store")
    fmt = peek_format(path)
    if fmt not in (DATASET_FORMAT, EMBEDDINGS_FORMAT):
        raise AlsegError(f"{path}: not an alseg dataset or embeddings store (format {fmt!r})")
    store = DatasetStore(path) if fmt == DATASET_FORMAT else EmbeddingsStore(path)
    recorded = store.attrs.get("content_hash")
    actual = hash_tree(path, skip=HASH_SKIP if (path / CHUNKS_FILE).exists() else {"zarr.json"})
    if recorded != actual:
        raise damaged(path, f"content hash {actual[:12]} differs from the recorded {str(recorded)[:12]}", fmt)
    arrays = sorted(chunk_files(path)) or sorted(name for name, _ in store.root.arrays())
    for name in arrays:
        store.read(name)
    return {"kind": "verification", "store": str(path.resolve()), "format": fmt, "arrays": len(arrays),
            "chunk_listing": (path / CHUNKS_FILE).exists(), "content_hash": actual, "ok": True}
