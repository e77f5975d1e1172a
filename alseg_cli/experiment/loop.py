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
from typing import Any, Dict, List, Optional

from ..atomic import write_json
from ..errors import AlsegError
from ..manifest import content_hash, make_manifest
from ..progress import as_reporter
from ..segmentation.labels import recorded_dataset_hash
from ..store import earlier_hashes
from . import progress as loop_progress
from .backend import can_start_cold, load_backend, method_of, models_for, needs_model
from .chain import (DEFAULT_BACKEND, chain_embeddings, chain_records, embeddings_key, encoder_keys,
                    encoders_undone, propagation_embeddings, run_chain, seed_task, set_threads,
                    shared_task, step_task, uses_pixels, write_rounds)
from .config import INPUT_KEYS, check_compatible, resolve_config, round_name
from .executors import Task, run_local, run_ray


def embeddings_needed(cfg: Dict[str, Any], run_dir) -> set:
    """The embeddings keys some unfinished chain still selects or propagates with. A finished
    chain needs none, so a run whose encoders and embedding stores were deleted (or a run's
    records kept without them) resumes without pretraining again."""
    needed = set()
    for name in cfg["methods"]:
        for seed in cfg["seeds"]:
            if len(chain_records(cfg, run_dir, name, seed)) < len(cfg["budgets"]):
                needed.update({chain_embeddings(cfg, name, seed), propagation_embeddings(cfg, name, seed)})
    return needed - {None}


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
    needed = embeddings_needed(cfg, run_dir)
    if uses_pixels(cfg) and "pixels" in needed:
        tasks.append(task("pixels", "embed", shared_task, (cfg, run_dir, backend)))
    for key in encoder_keys(cfg):
        for seed in cfg["seeds"]:
            if embeddings_key("encoder", seed, key) in needed:
                tasks.append(task(embeddings_key("encoder", seed, key), "pretrain", seed_task,
                                  (cfg, run_dir, seed, backend, key)))
    for name in cfg["methods"]:
        method = method_of(cfg, name)
        for seed in cfg["seeds"]:
            emb_key = chain_embeddings(cfg, name, seed)
            emb = (emb_key,) if emb_key in needed else ()
            chain = f"{name}/seed{seed}"
            if not ray:
                tasks.append(task(chain, "chain", run_chain, (cfg, run_dir, name, seed, backend), emb))
                continue
            for r in range(len(cfg["budgets"])):
                key = f"{chain}/{r}"
                uses_emb = r > 0 or can_start_cold(method)
                # the previous round's selection; its model too for methods that score with one
                prev = ((f"{chain}/{r - 1}/select",) + ((f"{chain}/{r - 1}/train",) if needs_model(method) else ())
                        if r else ())
                deps = (emb if uses_emb else ()) + prev
                tasks.append(task(f"{key}/select", "select", step_task,
                                  (cfg, run_dir, name, seed, r, "select", backend), deps))
                members = []
                if models_for(cfg, method) > 1:
                    for k in range(models_for(cfg, method)):
                        members.append(f"{key}/member{k}")
                        tasks.append(task(members[-1], "train", step_task,
                                          (cfg, run_dir, name, seed, r, "train", backend, k), [f"{key}/select"]))
                tasks.append(task(f"{key}/train", "train", step_task,
                                  (cfg, run_dir, name, seed, r, "train", backend), [f"{key}/select", *members]))
                tasks.append(task(f"{key}/evaluate", "evaluate", step_task,
                                  (cfg, run_dir, name, seed, r, "evaluate", backend), [f"{key}/train"]))
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
            write_rounds(cfg, run_dir, method, seed)
            out.append({"method": method, "seed": seed, "rounds": chain_records(cfg, run_dir, method, seed),
                        "ran": sum(v["ran"] for v in steps), "skipped": sum(v["skipped"] for v in steps)})
    return out


def start_run_dir(cfg: Dict[str, Any], run_dir: Path) -> None:
    """Write RUN_DIR/config.json, or check a resumed run's settings against it."""
    import json
    path = run_dir / "config.json"
    for key in INPUT_KEYS:
        # (an encoder template, e.g. enc/seed{seed}, is tied by its text)
        cfg[key + "_sha256"] = content_hash(cfg[key]) if cfg.get(key) and Path(cfg[key]).exists() else None
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("dataset_sha256") is None:     # a run from before hashes were kept here
            saved["dataset_sha256"] = recorded_dataset_hash(run_dir / "manifest.json")
        if cfg.get("human") and saved["dataset_sha256"] in earlier_hashes(cfg["dataset"]):
            saved["dataset_sha256"] = cfg["dataset_sha256"]   # the campaign's own imports since
        check_compatible(saved, cfg, path)
        # remember the union of methods and seeds ever run here
        cfg_saved = dict(cfg)
        cfg_saved["methods"] = list(dict.fromkeys(saved.get("methods", []) + cfg["methods"]))
        cfg_saved["seeds"] = list(dict.fromkeys(saved.get("seeds", []) + cfg["seeds"]))
        cfg_saved["variants"] = {**(saved.get("variants") or {}), **cfg["variants"]}
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
        scheduled = {t.key for t in tasks}
        undone = {s: encoders_undone(cfg, run_dir, s) for s in cfg["seeds"]}
        pending = [s for s in cfg["seeds"] if undone[s]
                   and any(embeddings_key("encoder", s, k) in scheduled for k in encoder_keys(cfg))]
        if display and pending:
            keys = list(dict.fromkeys(k for s in pending for k in undone[s]))
            loop_gcl = None in keys and cfg.get("pretrain") and not cfg.get("encoder")
            trained = (["a GCL encoder"] if loop_gcl else []) + [f"{k}'s encoder" for k in keys if k is not None]
            linked = "; linked instead where --reuse-encoders has one" if cfg.get("reuse_encoders") else ""
            what = (f"pretraining {' and '.join(trained)} ({cfg['pretrain_epochs']} epochs{linked}) and embedding"
                    if trained else "embedding the pool")
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
                "dice": [rec["evaluate"].get("mean_dice") for rec in r["rounds"]],
                "degenerate": [rec["evaluate"].get("degenerate") for rec in r["rounds"]]} for r in results]
    manifest = make_manifest(
        "loop", args={k: v for k, v in cfg.items()}, inputs={"dataset": cfg["dataset"]},
        outputs={"run_dir": run_dir, "config": run_dir / "config.json"},
        seed=None, seeds=cfg["seeds"], device=cfg["device"],
        budgets=cfg["budgets"], rounds=[round_name(p) for p in cfg["budgets"]], chains=summary,
        steps_run=sum(r["ran"] for r in results), steps_skipped=sum(r["skipped"] for r in results),
        seconds=round(time.perf_counter() - started, 2))
    write_json(run_dir / "manifest.json", manifest, force=True)
    return manifest
