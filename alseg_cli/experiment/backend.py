"""The steps a loop chains, behind one small interface so the orchestration can be tested
without training anything (tests pass a fake backend) and a distributed executor can
later ship the same calls elsewhere.

``ApiBackend`` calls the library entry points of alseg_cli.api; each writes its output
atomically and returns its manifest.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Dict, List, Optional


def _info(method: str) -> Dict[str, Any]:
    """What the acquisition registry says a method needs (an unknown name is an AlsegError)."""
    from ..acquisition import METHODS

    return METHODS.info(method)


def needs_model(method: str) -> bool:
    return _info(method)["needs"] in ("model", "ensemble")


def can_start_cold(method: str) -> bool:
    """Can the method choose a round with no labelled slice and no model? Methods that score
    with a model or learn from the labelled set cannot: their first round is random
    (method.md section 1)."""
    return _info(method).get("cold_start", not needs_model(method))


def embedding_source(method: str, cfg: Dict[str, Any]) -> Optional[str]:
    """'encoder' (GCL or --encoder), 'pixels', or None when the method uses no embeddings."""
    override = (cfg.get("method_embeddings") or {}).get(method)
    if override:
        return override
    if _info(method)["needs"] != "embeddings":
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
        # resume: a loop killed mid-pretraining continues from the last finished epoch
        return self.api.pretrain(dataset, out, seed=seed, epochs=epochs, device=device, force=True,
                                 resume=True, progress=self.progress, **options)

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
