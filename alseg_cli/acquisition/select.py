"""``select()``: resolve inputs, budget and pool, run a registered method, write the manifest.

Pool = train-split slices of the dataset that are not labelled. Embeddings are matched to
the dataset by ``slice_id``, never by position. The selection manifest records the labelled
set as ``{slice_id: round}``: previous rounds as they were, new picks at previous max + 1.
"""
from __future__ import annotations

import json

import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..atomic import check_writable, write_json
from ..errors import AlsegError
from ..manifest import load_manifest, make_manifest
from ..metrics.report import SCRIBBLE_COST
from ..store import DatasetStore, EmbeddingsStore
from . import learned  # noqa: F401  (registers coregcn, typiclust, vaal)
from .budget import parse_budget
from .methods import METHODS, SelectionContext, method_spec
from .options import SelectOptions
from .volumes import select_volumes


def list_methods() -> list:
    """Every method with its spec (what it needs, cold start, the loop's embeddings)."""
    out = []
    for name in METHODS.names():
        spec = method_spec(name)
        out.append({"name": name, "needs": spec.needs, "cold_start": spec.cold_start,
                    "embeddings": spec.embeddings, "labelled": spec.labelled,
                    "description": METHODS.describe(name)})
    return out


def _load_labeled(labeled) -> Dict:
    """A selection manifest (path, JSON text or dict) or None -> (manifest or None, {id: round})."""
    if labeled is None:
        return None, {}
    m = load_manifest(labeled, expect=["selection"])
    lab = m.get("labeled")
    if not isinstance(lab, dict):
        raise AlsegError("the --labeled selection manifest has no 'labeled' {slice_id: round} map")
    return m, {str(k): int(v) for k, v in lab.items()}


def annotation_summary(store: DatasetStore, ids, pool: int) -> Dict:
    """What the labelled set costs to annotate, in the units of figure 2: slices, whole volumes
    among them, the fraction of the fully labelled training set, and the cost in full-mask
    slices with masks (1 each; a volume is its slices) or with scribbles (1/15 each, the
    paper's assumption; `bootstrap --scribble-cost` redraws with another)."""
    vols = store.volumes[store.ids_to_indices(ids)] if ids else np.array([], dtype=str)
    names, labelled = np.unique(vols, return_counts=True)
    all_names, sizes = np.unique(store.volumes, return_counts=True)       # one pass, not one per volume
    size_of = dict(zip(all_names.tolist(), sizes.tolist()))
    whole = sum(int(n == size_of[v]) for v, n in zip(names.tolist(), labelled.tolist()))
    return {"slices": len(ids), "volumes": int(names.size), "whole_volumes": whole,
            "percent_of_pool": 100.0 * len(ids) / max(1, pool),
            "cost": {"full": float(len(ids)), "scribble": len(ids) * SCRIBBLE_COST}}


def _load_embeddings(path, store: DatasetStore):
    emb = EmbeddingsStore(path)
    ids = emb.slice_ids
    vec = emb.vectors()
    if vec.ndim != 2 or vec.shape[0] != ids.size:
        raise AlsegError(f"{path}: vectors {vec.shape} do not match {ids.size} slice ids")
    if not np.isfinite(vec).all():
        raise AlsegError(f"{path}: embeddings contain NaN or inf values; recompute them")
    missing = [s for s in ids if s not in store.index_of]
    if missing:
        raise AlsegError(f"{path}: {len(missing)} slice id(s) are not in the dataset {store.path}, "
                         f"e.g. {missing[0]}; embed this dataset or pass the matching --dataset")
    rows = np.asarray([store.index_of[s] for s in ids], dtype=np.int64)
    aligned = np.zeros((len(store), vec.shape[1]), dtype=vec.dtype)
    has = np.zeros(len(store), bool)
    aligned[rows] = vec
    has[rows] = True
    return emb, aligned, has


def select(method: str, budget: Optional[str] = None, add: Optional[int] = None,
           embeddings=None, dataset=None, models: Sequence[str] = (), labeled=None, seed: int = 0,
           out=None, force: bool = False, device: str = "auto", split: str = "train",
           options=None, args: Optional[Dict] = None, unit: str = "slice", protect=None,
           **option_values) -> Dict:
    """Choose the next slices to annotate; returns the selection manifest (also written to ``out``).

    ``options``: a SelectOptions (or a dict of its fields), updated by keyword ``option_values``
    (``mc_samples=10``, ...); defaults are SelectOptions'. ``budget``: a Budget or its text.

    ``labeled``: a previous selection manifest (path, JSON text or dict). ``dataset`` defaults to
    the embeddings store's ``dataset`` attribute, then the labelled manifest's ``dataset``.
    ``unit``: "slice", or "volume" (whole volumes up to the budget; volumes.py).
    ``protect``: a pseudo-labels manifest (k-NN propagation's pseudo.json) or slice ids whose
    slices are kept out of the pick while the rest of the pool still holds the round's count
    (Belharbi et al.'s protection "until inevitable").
    """
    fn = METHODS.get(method)                       # unknown method -> one-line error, first
    if unit not in ("slice", "volume"):
        raise AlsegError(f"--unit {unit!r}: choose slice or volume")
    needs = method_spec(method).needs
    params = SelectOptions.build(options, **option_values)      # bad options fail before any work
    if out is not None:
        check_writable(out, force)                 # fail before any work; nothing is written
    prev, lab_map = _load_labeled(labeled)
    emb_path = Path(embeddings) if embeddings is not None else None
    if dataset is None:
        if emb_path is not None:
            dataset = EmbeddingsStore(emb_path).attrs.get("dataset")
        if dataset is None and prev is not None:
            dataset = prev.get("dataset")
        if dataset is None:
            raise AlsegError("no dataset: pass --dataset DATA.zarr (or embeddings whose store names it)")
    store = DatasetStore(dataset)

    lab_idx = store.ids_to_indices(sorted(lab_map)) if lab_map else np.zeros(0, np.int64)
    train = store.indices(split)
    not_train = np.setdiff1d(lab_idx, train)
    if not_train.size:
        raise AlsegError(f"labelled slice {store.slice_ids[not_train[0]]} is not in the {split!r} split "
                         f"of {store.path}")
    total, k = parse_budget(budget, add, int(train.size), int(lab_idx.size))
    pool = np.setdiff1d(train, lab_idx)
    protection = None
    if protect is not None:
        ids = protect if isinstance(protect, (list, tuple)) else \
            list(json.loads(Path(protect).read_text()).get("pseudo_labeled", {}))
        held = np.isin(pool, store.ids_to_indices(sorted(ids))) if ids else np.zeros(pool.size, bool)
        kept = unit == "slice" and (~held).sum() >= k
        protection = {"pseudo_labelled": int(held.sum()), "held_out": bool(kept)}
        if kept:
            pool = pool[~held]

    vectors = has = None
    emb_attrs: Dict = {}
    if emb_path is not None:
        emb, vectors, has = _load_embeddings(emb_path, store)
        emb_attrs = emb.attrs
        lacking = np.concatenate([pool, lab_idx])[~has[np.concatenate([pool, lab_idx])]]
        if lacking.size:
            raise AlsegError(f"{emb_path}: no vector for {lacking.size} train slice(s), e.g. "
                             f"{store.slice_ids[lacking[0]]}; embed the whole dataset")
    elif needs == "embeddings":
        raise AlsegError(f"method {method!r} needs embeddings: pass --embeddings EMB.zarr or pipe "
                         f"'alseg embed DATA.zarr ... |' into select")
    ctx = SelectionContext(store=store, pool=pool, labeled=lab_idx, k=k, seed=int(seed), device=device,
                           vectors=vectors, has_vector=has, emb_attrs=emb_attrs, models=list(models),
                           options=params)
    import torch  # noqa: F401  (imported before timing so the import is not counted)

    t0 = time.perf_counter()
    picks = fn(ctx) if unit == "slice" else select_volumes(method, ctx, total)
    seconds = time.perf_counter() - t0
    picks = [int(i) for i in picks]
    k = k if unit == "slice" else len(picks)
    if len(picks) != k or len(set(picks)) != k or not set(picks) <= set(pool.tolist()):
        raise AlsegError(f"internal error: {method} returned an invalid selection")  # guards the registry
    new_round = (max(lab_map.values()) + 1) if lab_map else 0
    selected = [str(store.slice_ids[i]) for i in picks]
    labeled_out = dict(lab_map)
    labeled_out.update({s: new_round for s in selected})

    inputs = {"dataset": store.path}
    if emb_path is not None:
        inputs["embeddings"] = emb_path
    if isinstance(labeled, (str, Path)) and not str(labeled).lstrip().startswith("{"):
        inputs["labeled"] = labeled
    if models:
        inputs["models"] = list(models)
    manifest = make_manifest(
        "selection", args or {"method": method, "budget": budget, "add": add, "seed": seed},
        inputs=inputs, outputs={"selection": out}, seed=int(seed), device=str(device),
        method=method, params=params.as_dict(), dataset=str(store.path.resolve()),
        budget={"requested": budget if budget is not None else f"+{add}",
                "resolved": total if unit == "slice" else int(lab_idx.size) + k, "added": k, "pool": int(train.size)},
        unit=unit, annotation=annotation_summary(store, list(labeled_out), int(train.size)),
        round=new_round, labeled=labeled_out, selected=selected, seconds=round(seconds, 4),
        **({"diagnostics": ctx.diagnostics} if ctx.diagnostics else {}),
        **({"protection": protection} if protection else {}))
    if out is not None:
        write_json(out, manifest, force=force)
    return manifest
