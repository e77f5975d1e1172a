"""One chain of rounds: for each cumulative budget, select -> train -> evaluate.

Each step is done-marked (steps.py) and reads what it needs from earlier steps' files (the
previous round's selection and model), so a chain runs as one task (``run_chain``, the local
executor) or as one task per step (``step_task``, Ray) with the same results. Before its
rounds a chain may need the shared pixel embeddings or its seed's encoder and embeddings.
"""
from __future__ import annotations

import functools

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..atomic import write_json
from ..encoders.losses import default_weights
from ..encoders.reuse import find_trained, link_encoder
from ..errors import AlsegError
from ..metrics.report import mean_dice
from . import steps as layout
from .backend import (can_start_cold, embedding_source, encoder_key, load_backend, method_of, models_for,
                      modifiers, needs_model, own_pretrain_options)
from .config import encoder_for, iterations_for, pretrained_network, round_budgets
from .steps import StepRunner
from .twins import link_model, trained_twin

DEFAULT_BACKEND = "alseg_cli.experiment.backend:LibraryBackend"


def round_seed(seed: int, round_index: int) -> int:
    """A distinct, reproducible seed per (chain seed, round) for selection and training."""
    return seed * 1000 + round_index


PREVIOUS_ROUND_FLOOR = 0.5   # with retries: best val Dice under half the previous round's is degenerate


def previous_val_dice(model_dir: Path) -> float:
    """The previous round's model's best validation Dice (0 when unknown)."""
    try:
        m = json.loads((Path(model_dir) / "manifest.json").read_text())
        return float(m["members"][m["best_member"]]["best_val_dice"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return 0.0


def _mean_dice(result) -> Optional[float]:
    """The evaluation's mean Dice for the run's log, or None for a result without one (a fake
    backend's); anything else wrong is a real error and propagates."""
    try:
        return mean_dice(result)
    except (AlsegError, AttributeError, KeyError, TypeError):
        return None


def pixels_size(cfg: Dict[str, Any]) -> int:
    """Side of the pixel-Coreset vectors: ``pixels_size``, or the working size when unset (the
    reference: the whole image; k-center's cost grows with d = size^2 x channels)."""
    if cfg.get("pixels_size"):
        return int(cfg["pixels_size"])
    from ..store import DatasetStore
    return DatasetStore(cfg["dataset"]).size


def uses_pixels(cfg: Dict[str, Any]) -> bool:
    """Does any method select on the shared pixel embeddings?"""
    return any(embedding_source(m, cfg) == "pixels" for m in cfg["methods"])


def embeddings_key(source: Optional[str], seed: int, key: Optional[str] = None) -> Optional[str]:
    """The embeddings a chain of that source uses: 'pixels', 'seed<k>' (the loop encoder's),
    '<variant>-seed<k>' (a variant's own encoder's) or None."""
    return {"pixels": "pixels", "encoder": f"{key}-seed{seed}" if key else f"seed{seed}"}.get(source)


def chain_embeddings(cfg: Dict[str, Any], name: str, seed: int) -> Optional[str]:
    """The embeddings key of one chain (name: a method or a variant)."""
    return embeddings_key(embedding_source(name, cfg), seed, encoder_key(cfg, name))


def prepare_shared(cfg: Dict[str, Any], run_dir: Path, backend, runner: StepRunner) -> None:
    """Pixel embeddings (once) when any method uses them."""
    if uses_pixels(cfg):
        out = layout.embeddings_path(run_dir, "pixels")
        runner.run(out.parent, out.name, lambda: backend.embed(cfg["dataset"], out, "pixels", cfg["device"],
                                                               pixels_size=pixels_size(cfg)))


def propagation(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The k-NN propagation settings: its defaults under the loop's propagation_options."""
    from ..acquisition.propagate import DEFAULTS
    return {**DEFAULTS, **(cfg.get("propagation_options") or {})}


def propagation_embeddings(cfg: Dict[str, Any], name: str, seed: int) -> Optional[str]:
    """The embeddings key k-NN propagation ranks neighbours with (metric 'embedding'): the
    chain's own encoder embeddings, else the loop encoder's; None for the histogram metric."""
    if "knn-prop" not in modifiers(name) or propagation(cfg)["metric"] != "embedding":
        return None
    if embedding_source(name, cfg) == "encoder":
        return chain_embeddings(cfg, name, seed)
    return embeddings_key("encoder", seed)


def encoder_keys(cfg: Dict[str, Any]) -> List[Optional[str]]:
    """The encoders the chains embed with: None (the loop's) and/or variant names, in order."""
    keys = [encoder_key(cfg, m) for m in cfg["methods"] if embedding_source(m, cfg) == "encoder"]
    if any(propagation_embeddings(cfg, m, 0) == "seed0" for m in cfg["methods"]):
        keys.append(None)      # propagation ranks by the loop encoder's embeddings
    return list(dict.fromkeys(keys))


def uses_encoder(cfg: Dict[str, Any]) -> bool:
    """Does any chain embed with an encoder (rather than pixels or nothing)?"""
    return bool(encoder_keys(cfg))


def encoder_for_seed(cfg: Dict[str, Any], run_dir: Path, seed: int, key: Optional[str] = None) -> Optional[str]:
    if key is not None:
        return str(layout.encoder_dir(run_dir, seed, key))          # a variant always trains its own
    if cfg.get("encoder"):
        return encoder_for(cfg["encoder"], seed)
    if cfg.get("pretrain"):
        return str(layout.encoder_dir(run_dir, seed))
    return None


def prepare_seed(cfg: Dict[str, Any], run_dir: Path, seed: int, backend, runner: StepRunner,
                 key: Optional[str] = None) -> None:
    """One seed's encoder (trained once, reused by every round): the loop's (``key`` None) or a
    variant's, with the variant's pretrain_options over the loop's; then its embeddings."""
    if key not in encoder_keys(cfg):
        return
    encoder = encoder_for_seed(cfg, run_dir, seed, key)
    if encoder is None:
        raise AlsegError("methods " + ", ".join(m for m in cfg["methods"] if embedding_source(m, cfg) == "encoder")
                         + " need an encoder: pass --pretrain (train one per seed) or --encoder DIR")
    if key is not None or (cfg.get("pretrain") and not cfg.get("encoder")):
        enc = Path(encoder)
        options = dict(cfg.get("pretrain_options") or {})
        if key is not None:
            options.update(own_pretrain_options(cfg, key))
            if options.get("loss") == "sp-supcon":     # the loop's GCL settings do not apply to SP-Con
                own = ((cfg.get("variants") or {}).get(key) or {}).get("pretrain_options") or {}
                for gcl_only in ("groups", "weights", "tau", "batch_size"):
                    if gcl_only not in own:
                        options.pop(gcl_only, None)
        if pretrained_network(cfg) and options.get("loss", "gcl") == "gcl" and "weights" not in options:
            options["weights"] = default_weights((), pretrained=True)      # patient group alone
        runner.run(enc.parent, enc.name, lambda: _reuse_or_pretrain(cfg, enc, seed, backend, options),
                   summarize=_reused)
    out = layout.embeddings_path(run_dir, embeddings_key("encoder", seed, key))
    runner.run(out.parent, out.name, lambda: backend.embed(cfg["dataset"], out, encoder, cfg["device"]))


def _reuse_or_pretrain(cfg: Dict[str, Any], enc: Path, seed: int, backend, options: Dict[str, Any]):
    """A finished encoder of the same settings under ``reuse_encoders``, linked in; else trained."""
    if cfg.get("reuse_encoders"):
        found = find_trained(cfg["reuse_encoders"], cfg["dataset"], seed=seed, epochs=cfg["pretrain_epochs"],
                             **options)
        if found is not None:
            return link_encoder(found, enc)
    return backend.pretrain(cfg["dataset"], enc, seed=seed, epochs=cfg["pretrain_epochs"], device=cfg["device"],
                            **options)


def encoders_undone(cfg: Dict[str, Any], run_dir: Path, seed: int) -> List[Optional[str]]:
    """The encoder keys (as encoder_keys) whose embedding stores for the seed are not done."""
    def done(key):
        out = layout.embeddings_path(run_dir, embeddings_key("encoder", seed, key))
        return layout.is_done(out.parent, out.name)
    return [k for k in encoder_keys(cfg) if not done(k)]


def set_threads(cfg: Dict[str, Any]) -> None:
    if cfg.get("threads"):
        import torch
        torch.set_num_threads(int(cfg["threads"]))


ROUND_STEPS = ("select", "train", "evaluate")


def _embeddings(cfg: Dict[str, Any], run_dir: Path, name: str, seed: int) -> Optional[str]:
    key = chain_embeddings(cfg, name, seed)
    return None if key is None else str(layout.embeddings_path(run_dir, key))


def train_call(cfg: Dict[str, Any], run_dir, name: str, seed: int, r: int) -> Dict[str, Any]:
    """The keywords of round r's ``backend.train`` call except ``out``: everything its model
    depends on (twins.py compares them between rounds). A +knn-prop round after the first
    trains on propagated labels besides (_with_propagation adds them)."""
    budgets = round_budgets(cfg)
    rd = layout.round_dir(run_dir, name, seed, budgets[r])
    prev = layout.round_dir(run_dir, name, seed, budgets[r - 1]) if r else None
    options = dict(cfg.get("train_options") or {})
    if "arco" in modifiers(name):
        options.update(semi="arco", semi_options=dict(cfg.get("semi_options") or {}))
    if options.get("retries") and prev is not None and "min_val_dice" not in options:
        # a model far under the previous round's on validation counts as degenerate too
        options["min_val_dice"] = PREVIOUS_ROUND_FLOOR * previous_val_dice(prev / "model")
    if cfg.get("warm_start") and prev is not None:
        options["init"] = str(prev / "model")
    return dict(dataset=cfg["dataset"], labels=str(rd / "selection.json"), supervision=cfg["supervision"],
                iterations=iterations_for(cfg, float(budgets[r].fraction * 100)),
                ensemble=models_for(cfg, method_of(cfg, name)), seed=round_seed(seed, r), device=cfg["device"],
                base_channels=cfg["base_channels"], batch_size=cfg["batch_size"],
                **({"model": cfg["model"]} if cfg.get("model") else {}), **options)


def round_step(cfg: Dict[str, Any], run_dir, name: str, seed: int, r: int, step: str, backend,
               runner: StepRunner, member: Optional[int] = None) -> Dict[str, Any]:
    """One step of round ``r`` of a chain, done-marked; what it needs from earlier steps is
    read from their files (round r-1's selection and model), so steps can run anywhere.
    ``member`` (train only): train that ensemble member alone, unmarked; the marked train
    step then assembles the members already trained."""
    run_dir = Path(run_dir)
    method = method_of(cfg, name)          # name: the chain's directory and label (a variant's name)
    budget = round_budgets(cfg)[r]
    rd = layout.round_dir(run_dir, name, seed, budget)
    prev = layout.round_dir(run_dir, name, seed, round_budgets(cfg)[r - 1]) if r else None
    rseed = round_seed(seed, r)
    sel, model_dir = rd / "selection.json", rd / "model"
    # First round: the method itself where it can choose from nothing, else random.
    use = method if (r > 0 or can_start_cold(method)) else "random"
    mods = modifiers(name)
    pseudo_prev = prev / "pseudo" / "pseudo.json" if (prev and "knn-prop" in mods) else None
    if cfg.get("human"):       # the oracle is a person: labels are what import-labels brought back
        return human_step(cfg, run_dir, name, seed, r, step, rd, prev, backend, runner, use, rseed)
    if step == "select":
        protect = {"protect": str(pseudo_prev)} if pseudo_prev is not None and pseudo_prev.exists() else {}
        return runner.run(rd, "select", lambda: backend.select(
            method=use, budget=budget, dataset=cfg["dataset"],
            embeddings=_embeddings(cfg, run_dir, name, seed) if use == method else None,
            models=[str(prev / "model")] if (prev and use == method and needs_model(method)) else [],
            labeled=str(prev / "selection.json") if prev else None, seed=rseed, out=sel, device=cfg["device"],
            **({"unit": cfg["unit"]} if cfg.get("unit", "slice") != "slice" else {}),
            **(cfg.get("select_options") or {}), **protect),
            summarize=lambda m: {"method": use, "selected": len((m or {}).get("selected", [])),
                                 "labeled": len((m or {}).get("labeled", {}))})
    if step == "train":
        call = train_call(cfg, run_dir, name, seed, r)

        def train(out_dir=model_dir, **extra):
            return backend.train(out=out_dir, **call, **extra)
        if "knn-prop" in mods and prev is not None:
            train = _with_propagation(cfg, run_dir, name, seed, r, rd, prev, backend, runner, train)
        if member is not None:
            if layout.is_done(rd, "train"):
                return {"step": "train", "member": member, "skipped": True}
            return {"step": "train", "member": member, **(train(member=member) or {})}
        parallel = {"assemble": True} if models_for(cfg, method) > 1 and cfg["executor"] == "ray" else {}
        def linked_or_trained():         # looked for only when the step runs, not on every resume
            twin = trained_twin(cfg, run_dir, name, seed, r, call, train_call)
            return link_model(twin, model_dir) if twin else train(**parallel)
        return runner.run(rd, "train", linked_or_trained, summarize=_train_summary)
    return runner.run(rd, "evaluate", lambda: backend.evaluate(
        dataset=cfg["dataset"], model=str(model_dir), out=rd / "eval.json",
        split=cfg["eval_split"], device=cfg["device"]),
        summarize=lambda m: {"mean_dice": _mean_dice(m), "degenerate": (m or {}).get("degenerate")})


HUMAN_LABELS = "labelled.json"      # a human round's import-labels output


def _train_summary(m) -> Dict[str, Any]:
    """A train step's marker fields, from the model manifest."""
    m = m or {}
    return {"best_member": m.get("best_member"), "degenerate": m.get("degenerate"), "threads": _threads(m),
            "retries": sum(len(mb.get("attempts", [None])) - 1 for mb in m.get("members", [])), **_reused(m)}


def _reused(manifest) -> Dict[str, Any]:
    """A linked output's source for its step marker (encoder or model linked, not made here)."""
    source = (manifest or {}).get("reused_from")
    return {"reused_from": source} if source else {}


def _threads(model_manifest) -> Optional[int]:
    """The CPU threads a model trained with (its rounding, so its weights, depend on them):
    kept in the train step's marker, which outlives the model in kept records."""
    return ((model_manifest or {}).get("args") or {}).get("threads")


def human_step(cfg, run_dir: Path, name: str, seed: int, r: int, step: str, rd: Path, prev: Optional[Path],
               backend, runner: StepRunner, use: str, rseed: int) -> Dict[str, Any]:
    """A round of `loop --human`: select on what has been annotated so far, export the picks
    and stop until their labels are imported into rd/labelled.json; then train on it (no
    validation unless the store has masks in its val split) and evaluate where the store has
    a masked test split."""
    from ..campaign.export import export_selection
    from ..errors import AnnotationNeeded
    from ..store import DatasetStore

    sel, labelled, model_dir = rd / "selection.json", rd / HUMAN_LABELS, rd / "model"
    method = method_of(cfg, name)
    if step == "select":
        return runner.run(rd, "select", lambda: backend.select(
            method=use, budget=round_budgets(cfg)[r], dataset=cfg["dataset"],
            embeddings=_embeddings(cfg, run_dir, name, seed) if use == method else None,
            models=[str(prev / "model")] if (prev and use == method and needs_model(method)) else [],
            labeled=str(prev / HUMAN_LABELS) if prev else None, seed=rseed, out=sel, device=cfg["device"],
            **(cfg.get("select_options") or {})),
            summarize=lambda m: {"method": use, "selected": len((m or {}).get("selected", []))})
    store = DatasetStore(cfg["dataset"])
    if step == "train":
        runner.run(rd, "export", lambda: export_selection(sel, rd / "export", dataset=cfg["dataset"], force=True),
                   summarize=lambda m: {"slices": (m or {}).get("slices")})
        if not labelled.exists():
            kind = "scribbles" if cfg["supervision"] == "scribble" else "masks"
            raise AnnotationNeeded(
                f"round {r + 1}: annotate the slices listed in {rd / 'export' / 'tasks.csv'} (paint them in "
                f"{rd / 'export' / 'labels'}/<volume>.nii.gz), then run `alseg import-labels {cfg['dataset']} "
                f"{rd / 'export' / 'labels'}/*.nii.gz --kind {kind} --selection {sel} -o {labelled}` "
                f"and rerun this loop command")
        options = dict(cfg.get("train_options") or {})
        has_val = "val" in set(store.split.tolist()) and store.available("masks")[store.split == "val"].any()
        options.setdefault("val_split", "val" if has_val else "none")
        if options["val_split"] == "none":
            options.pop("retries", None)
        if cfg.get("warm_start") and prev is not None:     # the campaign's model keeps learning
            options["init"] = str(prev / "model")
        return runner.run(rd, "train", lambda: backend.train(
            dataset=cfg["dataset"], labels=str(labelled), out=model_dir, supervision=cfg["supervision"],
            iterations=iterations_for(cfg, float(round_budgets(cfg)[r].fraction * 100)), ensemble=models_for(cfg, method),
            seed=rseed, device=cfg["device"], base_channels=cfg["base_channels"], batch_size=cfg["batch_size"],
            **({"model": cfg["model"]} if cfg.get("model") else {}), **options),
            summarize=lambda m: {"best_member": (m or {}).get("best_member"), "validation": (m or {}).get("validation"),
                                 "threads": _threads(m)})
    split = cfg["eval_split"]
    info = {v["name"]: v for v in store.volume_info}
    names = set(store.volumes[store.split == split].tolist()) if split in set(store.split.tolist()) else set()
    if not names or not all(info[n].get("native") for n in names):
        return runner.run(rd, "evaluate", lambda: {"skipped": f"no fully annotated {split!r} split"},
                          summarize=lambda m: {"mean_dice": None, "skipped": m["skipped"]})
    return runner.run(rd, "evaluate", lambda: backend.evaluate(
        dataset=cfg["dataset"], model=str(model_dir), out=rd / "eval.json", split=split, device=cfg["device"]),
        summarize=lambda m: {"mean_dice": _mean_dice(m)})


def _with_propagation(cfg, run_dir: Path, name: str, seed: int, r: int, rd: Path, prev: Path, backend,
                      runner: StepRunner, train: Callable) -> Callable:
    """The train step of a +knn-prop round: the propagation set around this round's labelled
    slices, pseudo-labelled by the previous round's model (rd/pseudo, done-marked), then
    training on labels + pseudo-labels. passes 2 (the paper's "twice"): pseudo-label again
    with that model (rd/pseudo2) and train the round's model once more."""
    opts = propagation(cfg)
    emb = propagation_embeddings(cfg, name, seed)
    train = functools.partial(train, pseudo_share=opts.get("share"))
    settings = {k: opts[k] for k in ("k", "metric", "group_by", "bins")}

    def propagate(model_dir: Path, out: Path):
        runner.run(out.parent, out.name, lambda: backend.propagate(
            dataset=cfg["dataset"], labeled=str(rd / "selection.json"), model=str(model_dir), out=out,
            embeddings=str(layout.embeddings_path(run_dir, emb)) if emb else None, round_index=r,
            previous=str(prev / "pseudo" / "pseudo.json") if (prev / "pseudo" / "pseudo.json").exists() else None,
            device=cfg["device"], **settings),
            summarize=lambda m: {"count": (m or {}).get("count"), "pseudo_dice": (m or {}).get("pseudo_dice")})

    def trained(**extra):
        propagate(prev / "model", rd / "pseudo")
        if int(opts["passes"]) < 2 or extra.get("member") is not None:
            return train(pseudo=str(rd / "pseudo"), pseudo_weight=float(opts["weight"]), **extra)
        first = rd / "model.pass1"
        runner.run(rd, "train.pass1", lambda: train(pseudo=str(rd / "pseudo"), pseudo_weight=float(opts["weight"]),
                                                    out_dir=first))
        propagate(first, rd / "pseudo2")
        return train(pseudo=str(rd / "pseudo2"), pseudo_weight=float(opts["weight"]), **extra)
    return trained


def chain_records(cfg: Dict[str, Any], run_dir, method: str, seed: int) -> List[Dict[str, Any]]:
    """The finished rounds of a chain, read back from their done-markers."""
    records = []
    for r, budget in enumerate(round_budgets(cfg)):
        rd = layout.round_dir(run_dir, method, seed, budget)
        recs = {step: layout.read_marker(rd, step) for step in ROUND_STEPS}
        if any(v is None for v in recs.values()):
            break
        records.append({"round": r, "budget": float(budget.fraction * 100), "dir": str(rd), **recs})
    return records


def run_chain(cfg: Dict[str, Any], run_dir, method: str, seed: int, backend=DEFAULT_BACKEND,
              on_step: Optional[Callable] = None) -> Dict[str, Any]:
    """Run (or resume) every round of one (method, seed); return its per-round records."""
    run_dir = Path(run_dir)
    backend = load_backend(backend)       # torch threads: set by whoever runs the task
    runner = StepRunner(on_step=on_step)
    for r in range(len(cfg["budgets"])):
        for step in ROUND_STEPS:
            round_step(cfg, run_dir, method, seed, r, step, backend, runner)
        write_rounds(cfg, run_dir, method, seed)
    return {"method": method, "seed": seed, "rounds": chain_records(cfg, run_dir, method, seed),
            "ran": len(runner.ran), "skipped": len(runner.skipped)}


def write_rounds(cfg: Dict[str, Any], run_dir, method: str, seed: int) -> None:
    """RUN_DIR/<method>/seed<k>/rounds.json, from the markers (one writer per chain: its task
    locally, the driver on Ray, where a chain's rounds may finish concurrently)."""
    write_json(layout.chain_dir(run_dir, method, seed) / "rounds.json",
               chain_records(cfg, run_dir, method, seed), force=True)


def step_task(cfg, run_dir, method, seed, r, step, backend, member=None, on_step=None):
    """One round step as a task of its own (the Ray executor's unit); returns what ran."""
    runner = StepRunner(on_step=on_step)
    round_step(cfg, run_dir, method, seed, r, step, load_backend(backend), runner, member)
    return {"ran": len(runner.ran), "skipped": len(runner.skipped)}   # rounds.json: the driver's


def shared_task(cfg, run_dir, backend, on_step=None):
    prepare_shared(cfg, Path(run_dir), load_backend(backend), StepRunner(on_step=on_step))
    return "pixels"


def seed_task(cfg, run_dir, seed, backend, key=None, on_step=None):
    prepare_seed(cfg, Path(run_dir), seed, load_backend(backend), StepRunner(on_step=on_step), key)
    return seed
