"""The registry of acquisition methods (method.md sections 3-4) and the simple ones.

Each method is ``fn(ctx: SelectionContext) -> list of dataset indices`` (in selection order,
exactly ``ctx.k`` of them, all from ``ctx.pool``), registered with ``@method(name,
description, MethodSpec(...))``: what it needs, whether it can choose a first round with
nothing labelled, and which embeddings the loop gives it. ``select``, ``select --list`` and
the loop all read that spec. Learned methods (CoreGCN, TypiClust, VAAL) live in ``learned.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import AlsegError
from ..registry import Registry
from .kcenter import kcenter_greedy
from .options import SelectOptions

METHODS = Registry("acquisition method")

NEEDS = ("embeddings", "model", "ensemble", "dataset", "nothing")
EMBEDDINGS = ("encoder", "pixels", None)


@dataclass(frozen=True)
class MethodSpec:
    """What an acquisition method needs.

    needs: "embeddings", "model" (a trained segmentation model), "ensemble" (several, or an
    ensemble directory), "dataset" (the images) or "nothing". cold_start: it can choose with
    nothing labelled and no model (else a loop's first round is random). embeddings: the
    vectors a loop embeds for it by default: "encoder" (GCL or --encoder), "pixels", or None.
    labelled: it learns from the labelled set, so needs one. encoder_loss: a loop trains the
    method its own encoder per seed with this ``pretrain --loss`` (else it shares the loop's GCL one).
    """

    needs: str
    cold_start: bool
    embeddings: Optional[str] = None
    labelled: bool = False
    encoder_loss: Optional[str] = None

    def __post_init__(self):
        if self.needs not in NEEDS or self.embeddings not in EMBEDDINGS:
            raise ValueError(f"bad MethodSpec {self}")
        if (self.embeddings is not None) != (self.needs == "embeddings"):
            raise ValueError(f"MethodSpec {self}: embeddings is set exactly when needs is 'embeddings'")


def method(name: str, description: str, spec: MethodSpec):
    """Register an acquisition method: ``@method("name", "one line", MethodSpec(...))``."""
    return METHODS.register(name, description, spec=spec)


def method_spec(name: str) -> MethodSpec:
    """The spec a method was registered with (an unknown name is an AlsegError)."""
    return METHODS.info(name)["spec"]


@dataclass
class SelectionContext:
    store: object                        # DatasetStore
    pool: np.ndarray                     # dataset indices that may be picked (train, unlabelled)
    labeled: np.ndarray                  # dataset indices already labelled
    k: int                               # how many to pick now
    seed: int = 0
    device: str = "auto"
    vectors: Optional[np.ndarray] = None  # (len(store), D) rows aligned to dataset indices, or None
    has_vector: Optional[np.ndarray] = None  # (len(store),) bool
    emb_attrs: Dict = field(default_factory=dict)
    diagnostics: Dict = field(default_factory=dict)   # what a method reports into the manifest
    models: Sequence[str] = ()
    options: SelectOptions = field(default_factory=SelectOptions)

    def need_vectors(self, method: str):
        if self.vectors is None:
            raise AlsegError(f"method {method!r} needs embeddings: pass --embeddings EMB.zarr "
                             f"or pipe the output of 'alseg embed'")
        return self.vectors


def top_k(indices: np.ndarray, scores: np.ndarray, k: int) -> List[int]:
    """The k highest scores; ties go to the lowest dataset index (stable sort)."""
    order = np.lexsort((indices, -np.asarray(scores, dtype=np.float64)))
    return [int(i) for i in indices[order[:k]]]


@method("random", "Uniformly random unlabelled train slices (seeded).", MethodSpec("nothing", cold_start=True))
def select_random(ctx: SelectionContext) -> List[int]:
    rng = np.random.default_rng(ctx.seed)
    return [int(i) for i in rng.choice(ctx.pool, size=ctx.k, replace=False)]


def _kcenter_on(ctx: SelectionContext, vectors: np.ndarray) -> List[int]:
    """k-center greedy over pool + labelled rows of ``vectors`` (dataset-aligned)."""
    rows = np.concatenate([ctx.labeled, ctx.pool])
    lab_pos = np.arange(ctx.labeled.size)
    stats: Dict = {}
    picks = kcenter_greedy(vectors[rows], ctx.k, labeled=lab_pos, seed=ctx.seed, device=ctx.device,
                           chunk_size=ctx.options.chunk_size, stats=stats)
    if "covering_radius" in stats:
        ctx.diagnostics["covering_radius"] = stats["covering_radius"]
    return [int(rows[p]) for p in picks]


@method("coreset", "k-center greedy on any embeddings (pixels: Coreset baseline; GCL: the paper's method).",
        MethodSpec("embeddings", cold_start=True, embeddings="pixels"))
def select_coreset(ctx: SelectionContext) -> List[int]:
    return _kcenter_on(ctx, ctx.need_vectors("coreset"))


def _learned_coreset(ctx: SelectionContext, name: str, loss: str, what: str) -> List[int]:
    """k-center on embeddings whose store attrs say they come from an encoder trained with ``loss``."""
    vectors = ctx.need_vectors(name)
    encoder = ctx.emb_attrs.get("encoder") or {}
    encoder = encoder if isinstance(encoder, dict) else {"kind": encoder}
    made_by = encoder.get("loss") or ("gcl" if encoder.get("gcl") else None)
    ok = encoder.get("gcl") is True if loss == "gcl" else made_by == loss
    if not ok:
        raise AlsegError(f"{name} needs embeddings from {what}, but the store's encoder is "
                         f"{encoder.get('kind')!r} (loss {made_by}); use --method coreset for other embeddings")
    return _kcenter_on(ctx, vectors)


@method("gcl-coreset", "coreset on embeddings from a GCL-trained encoder (checked in the store attrs).",
        MethodSpec("embeddings", cold_start=True, embeddings="encoder"))
def select_gcl_coreset(ctx: SelectionContext) -> List[int]:
    return _learned_coreset(ctx, "gcl-coreset", "gcl", "a GCL-trained encoder")


@method("spcon-coreset", "coreset on embeddings from an SP-Con encoder (Peng et al.: `pretrain --loss "
        "sp-supcon`; a loop trains one per seed).",
        MethodSpec("embeddings", cold_start=True, embeddings="encoder", encoder_loss="sp-supcon"))
def select_spcon_coreset(ctx: SelectionContext) -> List[int]:
    return _learned_coreset(ctx, "spcon-coreset", "sp-supcon", "an SP-Con encoder (pretrain --loss sp-supcon)")


# ---- model-based methods -------------------------------------------------------------

def slice_scores(ctx: SelectionContext, score: str, mode: str, indices: np.ndarray) -> np.ndarray:
    """Score slices with the prediction API on un-augmented images; returns (len(indices),)."""
    from ..segmentation.predict import iter_predictions
    from .scores import PIXEL_SCORES, reduce_pixels

    fn = PIXEL_SCORES[score]
    out = np.full(indices.size, np.nan)
    pos = {int(i): j for j, i in enumerate(indices)}
    for batch_idx, probs in iter_predictions(list(ctx.models), ctx.store, indices, mode=mode,
                                             samples=ctx.options.mc_samples,
                                             seed=ctx.seed, device=ctx.device,
                                             batch_size=ctx.options.batch_size):
        if mode == "ensemble" and probs.shape[0] < 2:
            # one model's votes all agree: every score would be 0 and the picks the first slices
            raise AlsegError(f"{score} scoring needs an ensemble of at least 2 models and got 1; train "
                             f"with 'train-seg --ensemble M' or pass several --model dirs (loop: "
                             f"--models-per-round M, or ensemble_models)")
        s = reduce_pixels(fn(probs), ctx.options.reduce).detach().cpu().numpy()
        for i, v in zip(np.asarray(batch_idx), s):
            out[pos[int(i)]] = float(v)
    if np.isnan(out).any():
        raise AlsegError("the prediction API returned no score for some pool slices")
    return out


def _check_models(ctx: SelectionContext, method: str, ensemble: bool) -> None:
    if ctx.labeled.size == 0:
        raise AlsegError(f"method {method!r} needs a segmentation model trained on labelled slices, and "
                         f"none are labelled yet; use --method random or coreset for round 0")
    if not ctx.models:
        what = "an ensemble (several --model dirs or an ensemble dir)" if ensemble else "--model MODEL_DIR"
        raise AlsegError(f"method {method!r} needs {what} from 'alseg train-seg'")
    from pathlib import Path
    for m in ctx.models:
        if not Path(m).exists():
            raise AlsegError(f"--model {m}: no such model directory")


def _model_method(name: str, score: str, mode: str, ensemble: bool, description: str):
    @method(name, description, MethodSpec("ensemble" if ensemble else "model", cold_start=False))
    def run(ctx: SelectionContext) -> List[int]:
        _check_models(ctx, name, ensemble)
        # one --model for an ensemble method may be an ensemble directory: predict expands it
        return top_k(ctx.pool, slice_scores(ctx, score, mode, ctx.pool), ctx.k)
    run.__name__ = f"select_{name.replace('-', '_')}"
    return run


_model_method("entropy", "entropy", "softmax", False,
              "Highest mean softmax entropy of one segmentation model.")
_model_method("bald", "bald", "mc", False,
              "BALD mutual information from MC dropout (--mc-samples, BN in eval mode).")
_model_method("mc-variance", "mc-variance", "mc", False,
              "Variance of MC-dropout class probabilities, mean over classes.")
_model_method("variance-ratio", "variance-ratio", "ensemble", True,
              "1 - modal votes / M over an ensemble of models.")
_model_method("ensemble-entropy", "ensemble-entropy", "ensemble", True,
              "Entropy of the ensemble-mean softmax.")


@method("stochastic-batches", "Random batches of --batch-slices slices, take whole batches of "
        "highest mean ensemble entropy.", MethodSpec("ensemble", cold_start=False))
def select_stochastic_batches(ctx: SelectionContext) -> List[int]:
    _check_models(ctx, "stochastic-batches", True)
    s = ctx.options.batch_slices
    scores = slice_scores(ctx, "ensemble-entropy", "ensemble", ctx.pool)
    perm = np.random.default_rng(ctx.seed).permutation(ctx.pool.size)
    batches = [perm[i:i + s] for i in range(0, perm.size, s)]
    batch_score = np.array([scores[b].mean() for b in batches])
    order = np.lexsort((np.arange(len(batches)), -batch_score))
    picked: List[int] = []
    for b in order:
        members = batches[b]
        if len(picked) + members.size > ctx.k:
            # the last batch only partly fits: keep its most uncertain slices so the budget is exact
            members = np.asarray(top_k(members, scores[members], ctx.k - len(picked)))
        picked.extend(int(ctx.pool[j]) for j in members)
        if len(picked) >= ctx.k:
            break
    return picked
