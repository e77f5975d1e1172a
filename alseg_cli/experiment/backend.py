"""The steps a loop chains, behind one small interface so the orchestration can be tested
without training anything (tests pass a fake backend) and a distributed executor can
later ship the same calls elsewhere.

``ApiBackend`` calls the library entry points of alseg_cli.api; each writes its output
atomically and returns its manifest.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Dict, List, Optional

# Methods whose scores come from segmentation models: they cannot choose the first round
# (there is no model yet), so the first round is random for them (method.md section 1).
MODEL_METHODS = {"bald", "variance-ratio", "ensemble-entropy", "entropy", "stochastic-batches",
                 "mc-variance", "mc-dropout-variance"}
# Methods that learn from the labelled set (a discriminator/GCN): random first round too.
LABELED_METHODS = {"coregcn", "vaal", "knn-propagation", "knn-pseudo-label"}


def _registry_info(method: str) -> Dict[str, Any]:
    """What the acquisition registry says about a method, when it says anything."""
    try:
        from ..acquisition import select as _registers_all  # noqa: F401  (imports every method)
        from ..acquisition.methods import METHODS
    except ImportError:  # acquisition not installed: fall back to the tables above
        return {}
    return METHODS.info(method) if method in METHODS else {}


def needs_model(method: str) -> bool:
    info = _registry_info(method)
    if "needs_model" in info:
        return bool(info["needs_model"])
    needs = info.get("needs")
    if needs is not None:
        return needs in ("model", "ensemble")
    return method in MODEL_METHODS


def can_start_cold(method: str) -> bool:
    """Can the method choose a round with no labelled slice and no model?"""
    info = _registry_info(method)
    if "cold_start" in info:
        return bool(info["cold_start"])
    return not needs_model(method) and method not in LABELED_METHODS


def embedding_source(method: str, cfg: Dict[str, Any]) -> Optional[str]:
    """'encoder' (GCL or --encoder), 'pixels', or None when the method uses no embeddings."""
    override = (cfg.get("method_embeddings") or {}).get(method)
    if override:
        return override
    needs = _registry_info(method).get("needs")
    if method == "random" or needs_model(method) or (needs is not None and needs != "embeddings"):
        return None
    if method.startswith("gcl"):
        return "encoder"
    return "pixels"


class ApiBackend:
    """The real steps: alseg_cli.api."""

    def __init__(self, progress: bool = False):
        self.api = import_module("alseg_cli.api")
        self.progress = progress  # the loop draws its own display; steps stay quiet

    def pretrain(self, dataset, out, seed: int, epochs: int, device: str, **options):
        return self.api.pretrain(dataset, out, seed=seed, epochs=epochs, device=device, force=True,
                                 progress=self.progress, **options)

    def embed(self, dataset, out, encoder: str, device: str):
        return self.api.embed(dataset, out, encoder=encoder, device=device, force=True,
                              progress=self.progress)

    def select(self, *, method, budget, dataset, embeddings, models: List[str], labeled, seed, out, device,
               **options):
        # options: select()'s own keywords (mc_samples, batch_slices, reduce, options={...})
        opts = dict(method=method, budget=budget, dataset=dataset, seed=seed, out=out, force=True, device=device,
                    **options)
        if embeddings is not None:
            opts["embeddings"] = embeddings
        if models:
            opts["models"] = list(models)
        if labeled is not None:
            opts["labeled"] = labeled
        return self.api.select(**opts)

    def train(self, *, dataset, labels, out, supervision, iterations, ensemble, seed, device, **options):
        model = "dmpls" if supervision == "scribble" else "unet"
        return self.api.train_seg(dataset, labels, out, model=model, supervision=supervision,
                                  iterations=iterations, ensemble=ensemble, seed=seed,
                                  device=device, force=True, progress=self.progress, **options)

    def evaluate(self, *, dataset, model, out, split, device):
        return self.api.evaluate(dataset, model, out, split=split, device=device, force=True,
                                 progress=self.progress)


def load_backend(spec):
    """A backend object, or 'module:Class' (picklable across spawned processes)."""
    if not isinstance(spec, str):
        return spec
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)()
