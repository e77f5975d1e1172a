"""The steps a loop chains, behind one small interface so the orchestration can be tested
without training anything (tests pass a fake backend) and a distributed executor can
later ship the same calls elsewhere.

``LibraryBackend`` calls the library functions the commands run (prep, pretrain, embed,
select, train_seg, evaluate); each writes its output atomically and returns its manifest.
A backend given as 'module:Class' is imported by name, so spawned processes can load it.
"""
from __future__ import annotations

from importlib import import_module
from typing import List, Optional

from ..acquisition.methods import method_spec
from ..acquisition.select import select
from ..encoders.embed import embed
from ..encoders.pretrain import pretrain
from ..segmentation.evaluate import evaluate
from ..segmentation.train import train_seg


def needs_model(method: str) -> bool:
    return method_spec(method).needs in ("model", "ensemble")


def models_for(cfg, method: str) -> int:
    """Models trained per round of a method's chain: ``models_per_round``, and at least
    ``ensemble_models`` for a method that scores with an ensemble (variance ratio, ...), whose
    scores a single model would leave all zero."""
    m = int(cfg["models_per_round"])
    if method_spec(method).needs == "ensemble":
        return max(m, int(cfg.get("ensemble_models") or 2))
    return m


def can_start_cold(method: str) -> bool:
    """Can the method choose a round with no labelled slice and no model? Those that score
    with a model or learn from the labelled set cannot: their first round is random
    (method.md section 1)."""
    return method_spec(method).cold_start


def base_name(name: str) -> str:
    """A chain's name without its round modifiers: 'random+knn-prop' -> 'random'."""
    return name.split("+")[0]


def modifiers(name: str) -> list:
    """A chain's round modifiers: 'gcl-coreset+knn-prop+arco' -> ['knn-prop', 'arco']."""
    return name.split("+")[1:]


def method_of(cfg, name: str) -> str:
    """The acquisition method a chain runs: a variant's ``method``, else the name itself."""
    variant = (cfg.get("variants") or {}).get(base_name(name))
    return variant["method"] if variant else base_name(name)


def encoder_key(cfg, name: str) -> Optional[str]:
    """Which encoder a chain embeds with: a variant with its own pretrain_options, or a method
    whose spec names its own encoder loss (spcon-coreset), has its own (one per seed, under
    its name); everything else shares the loop's (None)."""
    name = base_name(name)      # modifiers share their base method's encoder
    variant = (cfg.get("variants") or {}).get(name)
    if variant and variant.get("pretrain_options") is not None:
        return name
    return name if method_spec(method_of(cfg, name)).encoder_loss else None


def own_pretrain_options(cfg, key: str) -> dict:
    """The pretrain options of an encoder of its own: the method's loss, then a variant's options."""
    variant = (cfg.get("variants") or {}).get(key) or {}
    loss = method_spec(method_of(cfg, key)).encoder_loss
    return {**({"loss": loss} if loss else {}), **(variant.get("pretrain_options") or {})}


def embedding_source(name: str, cfg) -> Optional[str]:
    """'encoder' (GCL or --encoder), 'pixels', or None when the chain uses no embeddings:
    method_embeddings overrides, then a variant's ``embeddings`` (a variant with its own
    encoder uses it), then the method's spec."""
    override = (cfg.get("method_embeddings") or {}).get(name) or (cfg.get("method_embeddings") or {}).get(base_name(name))
    variant = (cfg.get("variants") or {}).get(base_name(name)) or {}
    if override or variant.get("embeddings"):
        return override or variant["embeddings"]
    if variant.get("pretrain_options") is not None:
        return "encoder"
    return method_spec(method_of(cfg, name)).embeddings


class LibraryBackend:
    """The real steps: the library functions that the commands run."""

    def __init__(self, progress: bool = False):
        self.progress = progress  # the loop draws its own display; steps stay quiet

    def pretrain(self, dataset, out, seed: int, epochs: int, device: str, **options):
        # resume: a loop killed mid-pretraining continues from the last finished epoch
        return pretrain(dataset, out, seed=seed, epochs=epochs, device=device, force=True,
                        resume=True, progress=self.progress, **options)

    def embed(self, dataset, out, encoder: str, device: str, **options):
        # options: embed()'s own keywords (pixels_size for the pixel baseline)
        return embed(dataset, out, encoder=encoder, device=device, force=True, progress=self.progress, **options)

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
        return select(**opts)

    def train(self, *, dataset, labels, out, supervision, iterations, ensemble, seed, device, member=None,
              assemble=False, model=None, **options):
        """The round's model (``model``: a registered network, default unet, or dmpls on
        scribbles); ``member=k``: only ensemble member k, trained beside the others (continuing
        its own partial state); ``assemble``: the members trained so, put together. Always
        resumed: a loop killed mid-training continues each member from its last validation
        (the same weights as an uninterrupted run), and a model completed just before a kill
        is taken as it is (the run directory's settings cannot have changed: config.json)."""
        model = model or ("dmpls" if supervision == "scribble" else "unet")
        return train_seg(dataset, labels, out, model=model, supervision=supervision, iterations=iterations,
                         ensemble=ensemble, seed=seed, device=device, resume=True,
                         only_members=None if member is None else [member], progress=self.progress, **options)

    def propagate(self, *, dataset, labeled, model, out, **options):
        from ..acquisition.propagate import propagate
        return propagate(dataset, labeled, model, out, **options)

    def evaluate(self, *, dataset, model, out, split, device):
        return evaluate(dataset, model, out, split=split, device=device, force=True, progress=self.progress)


def load_backend(spec):
    """A backend object, or 'module:Class' (picklable across spawned processes)."""
    if not isinstance(spec, str):
        return spec
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)()
