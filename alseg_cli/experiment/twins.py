"""Rounds whose model another round has already trained.

A round's model depends only on its training call: the dataset's content, the labelled
slices, the seed, schedule and recipe, and where it ran (device; CPU threads, which change
float rounding). When another finished round, in this run or in a run under ``reuse_models``,
made exactly that call, the loop links its model (hard links; the manifest says
``reused_from``) instead of training it again, and the chain's later rounds start from it as
from their own. So BALD's random first round shares random's model, a ``+knn-prop`` chain's
first round (no propagation yet) shares its base method's, and an ablation row that repeats an
experiment's chain (pixel Coreset; NT-Xent + patient + volume = GCL) shares its rounds.

Rounds trained on propagated pseudo-labels (``+knn-prop`` after the first round) are never
linked: their labels are more than the selection. A change of the training code between the
two runs is not seen (as for ``reuse_encoders``).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from ..atomic import atomic_path, link_or_copy, read_json_or_empty
from ..errors import AlsegError
from ..manifest import content_hash, load_manifest, relocated, save_manifest
from . import steps as layout
from .backend import modifiers
from .config import DEFAULTS, round_budgets, round_name

# call(cfg, run_dir, name, seed, r) -> the round's backend.train keywords except ``out``
CallOf = Callable[[Dict[str, Any], Path, str, int, int], Dict[str, Any]]


def trains_on_selection(name: str, r: int) -> bool:
    """Does round r of this chain train on its selection alone (not on propagated labels)?"""
    return r == 0 or "knn-prop" not in modifiers(name)


def _origin(model_dir) -> str:
    """The model a model directory holds: the one it was linked from, else itself."""
    manifest = read_json_or_empty(Path(model_dir) / "manifest.json")
    return manifest.get("reused_from") or str(Path(model_dir).resolve())


def _fingerprint(call: Dict[str, Any]) -> Dict[str, Any]:
    """What a training call's model depends on, with paths replaced by what they hold (a warm
    start's ``init`` by the model it holds, so chains that linked their earlier rounds agree)."""
    out = {k: v for k, v in call.items() if k not in ("dataset", "labels", "device")}
    if out.get("init"):
        out["init"] = _origin(out["init"])
    labels = read_json_or_empty(call["labels"]).get("labeled")
    return {**out, "dataset": content_hash(call["dataset"]), "labels": labels}


def where_trained(device: str) -> Tuple[str, Optional[int]]:
    """(device, CPU threads or None on a GPU) a training here would record in its manifest."""
    import torch

    from ..device import resolve_device
    dev = resolve_device(device)
    return str(dev), torch.get_num_threads() if dev.type == "cpu" else None


def _runs(cfg: Dict[str, Any], run_dir: Path) -> Iterator[Tuple[Path, Dict[str, Any]]]:
    """This run, then the ``reuse_models`` runs, each with its resolved settings. A campaign's
    run (``human``) is never one: its models trained on what the annotator painted."""
    yield run_dir, cfg
    for other in cfg.get("reuse_models") or []:
        other = Path(other)
        settings = read_json_or_empty(other / "config.json")
        if settings and not settings.get("human") and other.resolve() != run_dir.resolve():
            yield other, {**DEFAULTS, **settings}


def _finished_rounds(cfg: Dict[str, Any], root: Path, seed: int,
                     name_of_round: str) -> Iterator[Tuple[str, int, Path, dict]]:
    """(chain, round index, round dir, model manifest) of the run's chains whose round
    ``name_of_round`` of the seed has a trained model."""
    try:
        index = [round_name(b) for b in round_budgets(cfg)].index(name_of_round)
    except (ValueError, KeyError, TypeError, AlsegError):
        return
    for chain in sorted(root.glob(f"*/seed{seed}/{name_of_round}")):
        name = chain.parent.parent.name
        manifest = read_json_or_empty(chain / "model" / "manifest.json") if layout.is_done(chain, "train") else {}
        if manifest.get("kind") == "model":
            yield name, index, chain, manifest


def trained_twin(cfg: Dict[str, Any], run_dir: Path, name: str, seed: int, r: int, call: Dict[str, Any],
                 call_of: CallOf) -> Optional[Path]:
    """The finished model of another round (this run's, else a ``reuse_models`` run's) that
    made the same training call as round r of chain ``name`` would; None if there is none."""
    run_dir = Path(run_dir)
    rd = Path(call["labels"]).parent
    labelled = read_json_or_empty(call["labels"]).get("labeled")
    if labelled is None or not trains_on_selection(name, r):
        return None
    want, here = None, where_trained(call["device"])
    for root, settings in _runs(cfg, run_dir):
        for other, index, other_rd, manifest in _finished_rounds(settings, root, seed, rd.name):
            if other_rd.resolve() == rd.resolve() or not trains_on_selection(other, index):
                continue
            if read_json_or_empty(other_rd / "selection.json").get("labeled") != labelled:
                continue                                  # the cheap test first
            args = manifest.get("args") or {}
            if (args.get("device"), args.get("threads")) != here:
                continue
            try:
                theirs = _fingerprint(call_of(settings, root, other, seed, index))
            except (AlsegError, KeyError, TypeError, ValueError):   # a folder that is no chain of that run
                continue
            want = want or _fingerprint(call)
            if theirs == want:
                return other_rd / "model"
    return None


def link_model(source: Path, out: Path) -> Dict[str, Any]:
    """Put the finished model directory ``source`` at ``out``; returns its manifest there."""
    manifest = relocated(load_manifest(source / "manifest.json", expect=("model",)), source, out)
    with atomic_path(out, force=True) as tmp:
        shutil.copytree(source, tmp, copy_function=link_or_copy, ignore=shutil.ignore_patterns("manifest.json"))
        save_manifest(tmp / "manifest.json", manifest)
    return manifest
