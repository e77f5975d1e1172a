"""Whole active-learning experiments: rounds x methods x seeds, resumable, in parallel.

One *chain* is one (method, seed): for each cumulative budget, select -> train -> evaluate,
each step done-marked (steps.py) so a killed run resumes at the last complete step. The run
is a task graph (executors.py): pixel embeddings once, per seed the GCL encoder and its
embeddings (``--pretrain``), and the chains, each waiting only for the embeddings it uses;
the local executor runs it ``jobs`` tasks at a time in spawned processes, Ray on a cluster.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..atomic import write_json
from ..errors import AlsegError
from ..manifest import make_manifest
from ..metrics.report import mean_dice
from ..progress import as_reporter
from . import progress as loop_progress
from . import steps as layout
from .backend import can_start_cold, embedding_source, load_backend, needs_model
from .executors import Task, run_local, run_ray
from .config import check_compatible, encoder_for, iterations_for, resolve_config, round_budgets, round_name
from .steps import StepRunner

DEFAULT_BACKEND = "alseg_cli.experiment.backend:LibraryBackend"


def round_seed(seed: int, round_index: int) -> int:
    """A distinct, reproducible seed per (chain seed, round) for selection and training."""
    return seed * 1000 + round_index


def _mean_dice(result) -> Optional[float]:
    """The evaluation's mean Dice for the run's log, or None for a result without one (a fake
    backend's); anything else wrong is a real error and propagates."""
    try:
        return mean_dice(result)
    except (AlsegError, AttributeError, KeyError, TypeError):
        return None


def prepare_shared(cfg: Dict[str, Any], run_dir: Path, backend, runner: StepRunner) -> None:
    """Pixel embeddings (once) when any method uses them."""
    if any(embedding_source(m, cfg) == "pixels" for m in cfg["methods"]):
        out = layout.embeddings_path(run_dir, "pixels")
        runner.run(out.parent, out.name, lambda: backend.embed(cfg["dataset"], out, "pixels", cfg["device"]))


def uses_encoder(cfg: Dict[str, Any]) -> bool:
    """Does any method embed with the GCL / --encoder encoder (rather than pixels or nothing)?"""
    return any(embedding_source(m, cfg) == "encoder" for m in cfg["methods"])


def encoder_for_seed(cfg: Dict[str, Any], run_dir: Path, seed: int) -> Optional[str]:
    if cfg.get("encoder"):
        return encoder_for(cfg["encoder"], seed)
    if cfg.get("pretrain"):
        return str(layout.encoder_dir(run_dir, seed))
    return None


def prepare_seed(cfg: Dict[str, Any], run_dir: Path, seed: int, backend, runner: StepRunner) -> None:
    """The GCL encoder of one seed (trained once, reused by every round) and its embeddings."""
    if not uses_encoder(cfg):
        return
    encoder = encoder_for_seed(cfg, run_dir, seed)
    if encoder is None:
        raise AlsegError("methods " + ", ".join(m for m in cfg["methods"] if embedding_source(m, cfg) == "encoder")
                         + " need an encoder: pass --pretrain (train one per seed) or --encoder DIR")
    if cfg.get("pretrain") and not cfg.get("encoder"):
        enc = Path(encoder)
        runner.run(enc.parent, enc.name, lambda: backend.pretrain(
            cfg["dataset"], enc, seed=seed, epochs=cfg["pretrain_epochs"], device=cfg["device"],
            **(cfg.get("pretrain_options") or {})))
    out = layout.embeddings_path(run_dir, f"seed{seed}")
    runner.run(out.parent, out.name, lambda: backend.embed(cfg["dataset"], out, encoder, cfg["device"]))


def _seed_ready(cfg: Dict[str, Any], run_dir: Path, seed: int) -> bool:
    """Is the seed's embedding store done (or not needed at all)?"""
    if not uses_encoder(cfg):
        return True
    out = layout.embeddings_path(run_dir, f"seed{seed}")
    return layout.is_done(out.parent, out.name)


def set_threads(cfg: Dict[str, Any]) -> None:
    if cfg.get("threads"):
        import torch
        torch.set_num_threads(int(cfg["threads"]))


ROUND_STEPS = ("select", "train", "evaluate")


def _embeddings(cfg: Dict[str, Any], run_dir: Path, method: str, seed: int) -> Optional[str]:
    source = embedding_source(method, cfg)
    if source == "pixels":
        return str(layout.embeddings_path(run_dir, "pixels"))
    if source == "encoder":
        return str(layout.embeddings_path(run_dir, f"seed{seed}"))
    return None


def round_step(cfg: Dict[str, Any], run_dir, method: str, seed: int, r: int, step: str, backend,
               runner: StepRunner, member: Optional[int] = None) -> Dict[str, Any]:
    """One step of round ``r`` of a chain, done-marked; what it needs from earlier steps is
    read from their files (round r-1's selection and model), so steps can run anywhere.
    ``member`` (train only): train that ensemble member alone, unmarked; the marked train
    step then assembles the members already trained."""
    run_dir = Path(run_dir)
    budget = round_budgets(cfg)[r]
    rd = layout.round_dir(run_dir, method, seed, budget)
    prev = layout.round_dir(run_dir, method, seed, round_budgets(cfg)[r - 1]) if r else None
    rseed = round_seed(seed, r)
    sel, model_dir = rd / "selection.json", rd / "model"
    # First round: the method itself where it can choose from nothing, else random.
    use = method if (r > 0 or can_start_cold(method)) else "random"
    if step == "select":
        return runner.run(rd, "select", lambda: backend.select(
            method=use, budget=budget, dataset=cfg["dataset"],
            embeddings=_embeddings(cfg, run_dir, method, seed) if use == method else None,
            models=[str(prev / "model")] if (prev and use == method and needs_model(method)) else [],
            labeled=str(prev / "selection.json") if prev else None, seed=rseed, out=sel, device=cfg["device"],
            **(cfg.get("select_options") or {})),
            summarize=lambda m: {"method": use, "selected": len((m or {}).get("selected", [])),
                                 "labeled": len((m or {}).get("labeled", {}))})
    if step == "train":
        def train(**extra):
            return backend.train(
                dataset=cfg["dataset"], labels=str(sel), out=model_dir, supervision=cfg["supervision"],
                iterations=iterations_for(cfg, float(budget.fraction * 100)), ensemble=cfg["models_per_round"],
                seed=rseed, device=cfg["device"], base_channels=cfg["base_channels"],
                batch_size=cfg["batch_size"], **(cfg.get("train_options") or {}), **extra)
        if member is not None:
            if layout.is_done(rd, "train"):
                return {"step": "train", "member": member, "skipped": True}
            return {"step": "train", "member": member, **(train(member=member) or {})}
        parallel = {"assemble": True} if cfg["models_per_round"] > 1 and cfg["executor"] == "ray" else {}
        return runner.run(rd, "train", lambda: train(**parallel),
                          summarize=lambda m: {"best_member": (m or {}).get("best_member")})
    return runner.run(rd, "evaluate", lambda: backend.evaluate(
        dataset=cfg["dataset"], model=str(model_dir), out=rd / "eval.json",
        split=cfg["eval_split"], device=cfg["device"]),
        summarize=lambda m: {"mean_dice": _mean_dice(m)})


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
        write_json(layout.chain_dir(run_dir, method, seed) / "rounds.json",
                   chain_records(cfg, run_dir, method, seed), force=True)
    return {"method": method, "seed": seed, "rounds": chain_records(cfg, run_dir, method, seed),
            "ran": len(runner.ran), "skipped": len(runner.skipped)}


def step_task(cfg, run_dir, method, seed, r, step, backend, member=None, on_step=None):
    """One round step as a task of its own (the Ray executor's unit); returns what ran."""
    runner = StepRunner(on_step=on_step)
    round_step(cfg, run_dir, method, seed, r, step, load_backend(backend), runner, member)
    if step == "evaluate":
        write_json(layout.chain_dir(run_dir, method, seed) / "rounds.json",
                   chain_records(cfg, run_dir, method, seed), force=True)
    return {"ran": len(runner.ran), "skipped": len(runner.skipped)}


def shared_task(cfg, run_dir, backend, on_step=None):
    prepare_shared(cfg, Path(run_dir), load_backend(backend), StepRunner(on_step=on_step))
    return "pixels"


def seed_task(cfg, run_dir, seed, backend, on_step=None):
    prepare_seed(cfg, Path(run_dir), seed, load_backend(backend), StepRunner(on_step=on_step))
    return seed


def task_graph(cfg: Dict[str, Any], run_dir: Path, backend) -> List[Task]:
    """Pixel embeddings, each seed's encoder and embeddings, and the chains, each waiting only
    for the embeddings it uses. Locally a chain is one task; on Ray every round step is one
    (a select waits for its chain's previous round only; ensemble members train in parallel),
    each with the resources of its kind."""
    ray = cfg["executor"] == "ray"
    threads = max(1, int(cfg["cpus_per_task"])) if ray else cfg["threads"]
    run_dir = str(run_dir)

    def task(key, kind, fn, args, deps=()):
        gpus = cfg.get(f"gpus_per_{kind}", 0.0) if kind in ("pretrain", "select", "train", "evaluate") else 0.0
        return Task(key, kind, fn, args, tuple(deps), threads, {"num_cpus": cfg["cpus_per_task"], "num_gpus": gpus})
    tasks = []
    if any(embedding_source(m, cfg) == "pixels" for m in cfg["methods"]):
        tasks.append(task("pixels", "embed", shared_task, (cfg, run_dir, backend)))
    if uses_encoder(cfg):
        for seed in cfg["seeds"]:
            tasks.append(task(f"seed{seed}", "pretrain", seed_task, (cfg, run_dir, seed, backend)))
    for method in cfg["methods"]:
        source = embedding_source(method, cfg)
        for seed in cfg["seeds"]:
            emb = ("pixels",) if source == "pixels" else (f"seed{seed}",) if source == "encoder" else ()
            chain = f"{method}/seed{seed}"
            if not ray:
                tasks.append(task(chain, "chain", run_chain, (cfg, run_dir, method, seed, backend), emb))
                continue
            for r in range(len(cfg["budgets"])):
                key = f"{chain}/{r}"
                uses_emb = r > 0 or can_start_cold(method)
                # the previous round's selection; its model too for methods that score with one
                prev = ((f"{chain}/{r - 1}/select",) + ((f"{chain}/{r - 1}/train",) if needs_model(method) else ())
                        if r else ())
                deps = (emb if uses_emb else ()) + prev
                tasks.append(task(f"{key}/select", "select", step_task,
                                  (cfg, run_dir, method, seed, r, "select", backend), deps))
                members = []
                if cfg["models_per_round"] > 1:
                    for k in range(cfg["models_per_round"]):
                        members.append(f"{key}/member{k}")
                        tasks.append(task(members[-1], "train", step_task,
                                          (cfg, run_dir, method, seed, r, "train", backend, k), [f"{key}/select"]))
                tasks.append(task(f"{key}/train", "train", step_task,
                                  (cfg, run_dir, method, seed, r, "train", backend), [f"{key}/select", *members]))
                tasks.append(task(f"{key}/evaluate", "evaluate", step_task,
                                  (cfg, run_dir, method, seed, r, "evaluate", backend), [f"{key}/train"]))
    return tasks


def chain_results(cfg: Dict[str, Any], run_dir: Path, results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per chain: its round records and how many steps ran or were found done, whether the
    chain ran as one task (local) or as one task per step (Ray)."""
    out = []
    for method in cfg["methods"]:
        for seed in cfg["seeds"]:
            chain = f"{method}/seed{seed}"
            if chain in results:
                out.append(results[chain])
                continue
            steps = [v for k, v in results.items() if k.startswith(chain + "/") and "/member" not in k]
            out.append({"method": method, "seed": seed, "rounds": chain_records(cfg, run_dir, method, seed),
                        "ran": sum(v["ran"] for v in steps), "skipped": sum(v["skipped"] for v in steps)})
    return out


def start_run_dir(cfg: Dict[str, Any], run_dir: Path) -> None:
    """Write RUN_DIR/config.json, or check a resumed run's settings against it."""
    import json
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        check_compatible(saved, cfg, path)
        # remember the union of methods and seeds ever run here
        cfg_saved = dict(cfg)
        cfg_saved["methods"] = list(dict.fromkeys(saved.get("methods", []) + cfg["methods"]))
        cfg_saved["seeds"] = list(dict.fromkeys(saved.get("seeds", []) + cfg["seeds"]))
        write_json(path, cfg_saved, force=True)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, cfg, force=True)


def run_loop(out, config: Optional[str] = None, backend=DEFAULT_BACKEND, on_step=None,
             progress=False, **options) -> Dict[str, Any]:
    """Run or resume an experiment into RUN_DIR ``out``; return the loop manifest.

    ``progress``: a Reporter for the summary (progress.py), True for plain lines, False for none.
    ``options`` are the settings of config.DEFAULTS (None = not given); ``config`` a TOML/
    YAML file. ``on_step`` (in-process runs only) is called before each step that runs.
    """
    cfg = resolve_config(options, config)
    run_dir = Path(out).resolve()
    if not Path(cfg["dataset"]).exists():
        raise AlsegError(f"{cfg['dataset']}: dataset store not found (make one with 'alseg prep')")
    start_run_dir(cfg, run_dir)
    started = time.perf_counter()
    jobs = cfg["jobs"]
    if (jobs > 1 or cfg["executor"] == "ray") and not isinstance(backend, str):
        raise AlsegError("jobs > 1 and --executor ray need a backend given as 'module:Class' so other "
                         "processes can import it")

    chains = [(m, s) for m in cfg["methods"] for s in cfg["seeds"]]
    display = None
    if progress:
        display = loop_progress.LoopProgress(cfg, run_dir, chains, reporter=as_reporter(progress))
        display.start()
    main_backend = load_backend(backend) if cfg["executor"] == "local" else backend
    tasks = task_graph(cfg, run_dir, main_backend if jobs <= 1 else backend)
    paths = (cfg["dataset"], str(run_dir / "config.json"))

    def in_process(task: Task):
        set_threads({"threads": task.threads})
        try:
            return task.fn(*task.args, on_step=on_step)
        finally:
            set_threads(cfg)
    try:
        pending = [s for s in cfg["seeds"] if not _seed_ready(cfg, run_dir, s)]
        if display and pending:
            what = (f"pretraining a GCL encoder ({cfg['pretrain_epochs']} epochs) and embedding"
                    if cfg.get("pretrain") and not cfg.get("encoder") else "embedding the pool")
            display.note(f"{what} for seed {', '.join(map(str, pending))}; the chains that use it start after")
        if cfg["executor"] == "ray":
            results = run_ray(tasks, paths, cfg.get("ray_address"))
        else:
            results = run_local(tasks, jobs, paths, in_process)
    finally:
        if display:
            display.stop()
    results = chain_results(cfg, run_dir, results)
    summary = [{"method": r["method"], "seed": r["seed"],
                "dice": [rec["evaluate"].get("mean_dice") for rec in r["rounds"]]} for r in results]
    manifest = make_manifest(
        "loop", args={k: v for k, v in cfg.items()}, inputs={"dataset": cfg["dataset"]},
        outputs={"run_dir": run_dir, "config": run_dir / "config.json"},
        seed=None, seeds=cfg["seeds"], device=cfg["device"],
        budgets=cfg["budgets"], rounds=[round_name(p) for p in cfg["budgets"]], chains=summary,
        steps_run=sum(r["ran"] for r in results), steps_skipped=sum(r["skipped"] for r in results),
        seconds=round(time.perf_counter() - started, 2))
    write_json(run_dir / "manifest.json", manifest, force=True)
    return manifest
