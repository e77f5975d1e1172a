"""First rounds trained once per run and seed.

A method that cannot choose from nothing (BALD, ...) picks its first round at random, and a
``+knn-prop`` chain's first round has no propagation yet. Such a round trains exactly the model
that another chain of the same seed trains in its first round (random's, or the base
method's): the same labelled slices, seed, schedule and recipe. The loop links that finished
model instead of training it again (hard links; its manifest says ``reused_from``), and the
chain's later rounds start from it as from their own. Only one-model rounds are linked: an
ensemble method (stochastic-batches) trains more members than random's round has.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from ..atomic import atomic_path, link_or_copy
from ..errors import AlsegError
from ..manifest import load_manifest, relocated, save_manifest
from . import steps as layout
from .backend import method_of, models_for, modifiers

# modifiers that change nothing in a first round (no previous model to pseudo-label with)
IDLE_IN_FIRST_ROUND = {"knn-prop"}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _recipe(cfg: Dict[str, Any], name: str):
    """What a chain's first-round training depends on besides the run's settings and seed."""
    return models_for(cfg, method_of(cfg, name)), set(modifiers(name)) - IDLE_IN_FIRST_ROUND


def first_round_twin(cfg: Dict[str, Any], run_dir: Path, name: str, seed: int, rd: Path) -> Optional[Path]:
    """The finished first-round model of another chain of this run and seed that trained on the
    same labelled slices with the same recipe (one model: ensembles draw members apart); None if
    there is none."""
    recipe = _recipe(cfg, name)
    labelled = _read(rd / "selection.json").get("labeled")
    if recipe[0] != 1 or labelled is None:
        return None
    for other in sorted(Path(run_dir).glob(f"*/seed{seed}/{rd.name}")):
        if other == rd or not layout.is_done(other, "train"):
            continue
        try:
            same = _recipe(cfg, other.parent.parent.name) == recipe
        except AlsegError:            # a folder that is no chain of this run's settings
            continue
        if (same and _read(other / "selection.json").get("labeled") == labelled
                and _read(other / "model" / "manifest.json").get("kind") == "model"):
            return other / "model"
    return None


def link_model(source: Path, out: Path) -> Dict[str, Any]:
    """Put the finished model directory ``source`` at ``out``; returns its manifest there."""
    manifest = relocated(load_manifest(source / "manifest.json", expect=("model",)), source, out)
    with atomic_path(out, force=True) as tmp:
        shutil.copytree(source, tmp, copy_function=link_or_copy, ignore=shutil.ignore_patterns("manifest.json"))
        save_manifest(tmp / "manifest.json", manifest)
    return manifest
