"""Finished encoders reused across runs instead of trained again.

An encoder depends only on the dataset store's content and its training settings
(``pretrain_settings``: loss, groups, weights, seed, ...; never the supervision or the rounds'
schedule), so another run's finished encoder with the same ones is what training here would
give, up to float nondeterminism. ``find_trained`` looks for one; ``link_encoder`` puts it in
place (hard links where the file system allows, copies otherwise), its manifest naming the
source. An ablation row and an experiment's GCL encoder, or a full-mask and a scribble run,
then share one training.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

from ..atomic import atomic_path, link_or_copy, read_json_or_empty
from ..manifest import content_hash, load_manifest, relocated, save_manifest
from ..store import DatasetStore
from .pretrain import CONFIG_KEYS, pretrain_settings

# what embedding needs; checkpoint.pt (weights and optimiser state, for resuming) is left behind
ENCODER_FILES = ("encoder.pt", "config.json", "loss.json", "loss.png")


def _settings(config: dict) -> dict:
    """CONFIG_KEYS of an encoder config, as JSON writes them (tuples become lists)."""
    return json.loads(json.dumps({k: config.get(k, "gcl" if k == "loss" else None) for k in CONFIG_KEYS}))


def _candidates(root: Path) -> Iterable[Path]:
    """Encoder manifests under a run directory (its encoders/), an encoder dir, or any folder."""
    base = root / "encoders" if (root / "encoders").is_dir() else root
    return sorted(base.glob("**/manifest.json"))


def find_trained(roots: Iterable[os.PathLike], dataset, epochs: Optional[int] = None, **options) -> Optional[Path]:
    """The first finished encoder under ``roots`` trained on this dataset's content with the
    settings ``pretrain(dataset, epochs=epochs, **options)`` would use; None if there is none."""
    roots = [Path(r) for r in roots if Path(r).exists()]
    if not roots:
        return None
    want, epochs = pretrain_settings(DatasetStore(dataset), epochs=epochs, **options)
    want, sha = _settings(want), content_hash(dataset)
    for root in roots:
        for path in _candidates(root):
            m = read_json_or_empty(path)
            if (m.get("kind") == "encoder" and m.get("epochs_done") == epochs
                    and ((m.get("inputs") or {}).get("dataset") or {}).get("sha256") == sha
                    and _settings(m.get("config") or {}) == want
                    and all((path.parent / f).exists() for f in ENCODER_FILES)):
                return path.parent
    return None


def link_encoder(source: os.PathLike, out: os.PathLike) -> dict:
    """Put the finished encoder ``source`` at ``out`` (replacing a partial one there); returns
    its manifest, with ``reused_from`` and ``outputs`` naming the new place."""
    source, out = Path(source).resolve(), Path(out)
    manifest = relocated(load_manifest(source / "manifest.json", expect=("encoder",)), source, out)
    with atomic_path(out, force=True) as tmp:
        tmp.mkdir(parents=True)
        for name in ENCODER_FILES:
            link_or_copy(source / name, tmp / name)
        save_manifest(tmp / "manifest.json", manifest)
    return manifest
