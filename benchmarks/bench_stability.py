"""Do round models collapse? The demo's round models over many seeds, per training recipe.

    python benchmarks/bench_stability.py [--seeds 5] [--recipes today,quick] [--methods random,coreset,gcl-coreset]
                                         [--jobs 2] [--out /tmp/stability]

The demo's setting (examples/demo.toml): phantoms at 64 px (`alseg prep phantoms`), budgets
5/10/20 % of the train pool, chained picks per seed, an 8-channel UNet per round trained for
150 iterations with seed = chain seed x 1000 + round (the loop's pairing). random, coreset
(pixels) and gcl-coreset (a 1-epoch GCL encoder at 32 px per seed, as the demo) pick without
a model, so their picks are computed once and every recipe trains on the same slices.

Per recipe it prints the number of collapsed models (best checkpoint degenerate on
validation: a foreground class present in the validation masks predicted nowhere), which
classes died, validation Dice (what the recipe is chosen on) and test Dice (reported, never
used to choose), their spread over seeds, retries, and CPU seconds per model. Finished
models under --out are reused, so a rerun resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BUDGETS = (5, 10, 20)
DEMO = {"iterations": 150, "base_channels": 8, "batch_size": 6, "val_every": 200, "lr": 0.01}

# name -> train_seg options over the demo's; "today" is the demo's recipe before this diagnostic
RECIPES = {
    "today": {},
    "val25": {"val_every": 25},
    "lr0.05": {"lr": 0.05, "val_every": 25},
    "lr0.1": {"lr": 0.1, "val_every": 25},
    "warmup": {"lr": 0.05, "warmup": 15, "val_every": 25},
    "adamw": {"optimizer": "adamw", "lr": 0.003, "val_every": 25},
    "fg-batches": {"sampler": "foreground", "val_every": 25},
    "balanced": {"class_weights": "balanced", "val_every": 25},
    "no-augment": {"augment": "none", "val_every": 25},
    "lr0.1-balanced": {"lr": 0.1, "class_weights": "balanced", "val_every": 25},
    "lr0.1-balanced-fg": {"lr": 0.1, "class_weights": "balanced", "sampler": "foreground", "val_every": 25},
    "lr0.05-balanced": {"lr": 0.05, "class_weights": "balanced", "val_every": 25},
    # chosen on validation Dice among the above (0 collapses, highest val mean): examples/demo.toml
    "quick": {"lr": 0.05, "class_weights": "balanced", "val_every": 25, "retries": 2},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_picks(store, out: Path, seeds, methods):
    """Chained selections per (method, seed) at BUDGETS; returns {(method, seed, pct): path}."""
    from alseg_cli.api import embed, pretrain, select

    picks = {}
    pixels = out / "emb-pixels.zarr"
    if "coreset" in methods and not pixels.exists():
        embed(store, pixels, encoder="pixels", progress=False)
    for seed in seeds:
        emb = {"random": None, "coreset": pixels}
        if "gcl-coreset" in methods:
            enc, gcl = out / f"enc-seed{seed}", out / f"emb-gcl-seed{seed}.zarr"
            if not (enc / "encoder.pt").exists():
                pretrain(store, enc, seed=seed, epochs=1, size=32, device="cpu", progress=False, force=True)
            if not gcl.exists():
                embed(store, gcl, encoder=str(enc), progress=False)
            emb["gcl-coreset"] = gcl
        for method in methods:
            prev = None
            for r, pct in enumerate(BUDGETS):
                path = out / "picks" / method / f"seed{seed}" / f"round{pct}.json"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    select(method=method, budget=f"{pct}%", dataset=store, embeddings=emb[method],
                           labeled=prev, seed=seed * 1000 + r, out=path, device="cpu")
                picks[(method, seed, pct)] = path
                prev = path
    return picks


def train_one(job):
    """Train and evaluate one round model (a worker process, one thread)."""
    import torch

    torch.set_num_threads(1)
    from alseg_cli.api import evaluate, train_seg

    store, sel, out, seed, options = job
    out = Path(out)
    if not (out / "eval.json").exists():
        t = time.process_time()
        m = train_seg(store, str(sel), out / "model", seed=seed, device="cpu", progress=False, force=True,
                      **options)
        e = evaluate(store, out / "model", split="test", device="cpu", progress=False, hd95=False)
        best = m["members"][m["best_member"]]
        curve = json.loads((out / "model" / best["dir"] / "curve.json").read_text())
        # when every validation class is first predicted somewhere (None: never, by the last validation)
        alive = next((c["iteration"] for c in curve if not c.get("degenerate")), None)
        record = {"seconds": time.process_time() - t, "model": m, "test_dice": e["mean_dice"],
                  "test_per_class": {k: v["dice"] for k, v in e["per_class"].items()}, "alive_at": alive}
        (out / "eval.json").write_text(json.dumps(record))
    return json.loads((out / "eval.json").read_text())


def summarise(name, records):
    best = [r["model"]["members"][r["model"]["best_member"]] for r in records]
    collapsed = [b for b in best if b.get("degenerate")]
    dead = {}
    for b in collapsed:
        dead[b["degenerate"]] = dead.get(b["degenerate"], 0) + 1
    retried = sum(len(b.get("attempts", [])) > 1 for b in best)
    val = np.array([b["best_val_dice"] for b in best]) * 100
    test = np.array([r["test_dice"] for r in records]) * 100
    alive = [r.get("alive_at") for r in records if r.get("alive_at") is not None]
    return {"recipe": name, "models": len(records), "collapsed": len(collapsed), "retried": retried,
            "alive_median": float(np.median(alive)) if alive else float("nan"),
            "why": dead, "val_mean": val.mean(), "val_sd": val.std(ddof=1) if val.size > 1 else 0.0,
            "test_mean": test.mean(), "test_sd": test.std(ddof=1) if test.size > 1 else 0.0,
            "test_min": test.min(), "cpu_s": float(np.mean([r["seconds"] for r in records]))}


ACDC_QUICK = {"iterations": 300, "base_channels": 16, "batch_size": 6, "lr": 0.1}   # the quick preset's round before
# name -> train_seg options over ACDC_QUICK; "quick" is the loop's quick preset now (chosen on
# validation Dice among these at the CPU of "today"'s rounds)
ACDC_RECIPES = {"today": {},
                "sgd-balanced": {"class_weights": "balanced", "val_every": 50, "retries": 2},
                "adamw": {"optimizer": "adamw", "lr": 0.003, "class_weights": "balanced", "val_every": 50,
                          "retries": 2},
                "adamw-1e-3-val50": {"optimizer": "adamw", "lr": 0.001, "class_weights": "balanced",
                                     "val_every": 50, "retries": 2},
                "quick": {"optimizer": "adamw", "lr": 0.001, "class_weights": "balanced", "val_every": 100,
                          "retries": 2}}


def acdc_spread(acdc_dir: Path, out: Path, seeds, recipes, jobs: int, budget: str = "5%"):
    """ACDC at 128 px, one fixed random selection: how much does the training seed alone move
    test Dice? One model per (recipe, seed) at the quick preset's round settings."""
    from alseg_cli.api import select

    store = _acdc_store(acdc_dir, out)
    sel = out / f"acdc-random-{budget.rstrip('%')}.json"
    if not sel.exists():
        select(method="random", budget=budget, dataset=store, seed=0, out=sel)
    jobs_ = [(str(store), str(sel), str(out / "acdc-models" / name / f"seed{s}"), s,
              {**ACDC_QUICK, **ACDC_RECIPES[name]}) for name in recipes for s in seeds]
    log(f"ACDC: {len(jobs_)} models (picks fixed: random {budget}, seed 0) ...")
    with ProcessPoolExecutor(jobs) as pool:
        records = list(pool.map(train_one, jobs_))
    print(f"\n| ACDC 128 px, random {budget} fixed | models | collapsed | val Dice mean (chosen on) | test Dice per "
          f"seed | test mean | sd over seeds | CPU s/model |\n|---|---|---|---|---|---|---|---|")
    for name in recipes:
        recs = [r for j, r in zip(jobs_, records) if j[2].split("/")[-2] == name]
        d = np.array([r["test_dice"] * 100 for r in recs])
        best = [r["model"]["members"][r["model"]["best_member"]] for r in recs]
        n_bad = sum(bool(b.get("degenerate")) for b in best)
        val = np.mean([b["best_val_dice"] * 100 for b in best])
        print(f"| {name} | {len(recs)} | {n_bad} | {val:.1f} | {' / '.join(f'{v:.1f}' for v in d)} | {d.mean():.1f} | "
              f"{d.std(ddof=1):.1f} | {np.mean([r['seconds'] for r in recs]):.0f} |")


CHAIN_BUDGETS = ("2%", "3%", "4%", "5%")


def _acdc_store(acdc_dir: Path, out: Path) -> Path:
    import subprocess

    store = out / "acdc128.zarr"
    if not store.exists():
        split = {f"patient{i:03d}": "train" if i <= 60 else ("val" if i <= 70 else "test") for i in range(1, 81)}
        (out / "acdc_split.json").write_text(json.dumps(split))
        subprocess.run([sys.executable, "-m", "alseg_cli", "prep", str(acdc_dir), "-o", str(store), "--size", "128",
                        "--split-file", str(out / "acdc_split.json"), "--unannotated", "4"], check=True,
                       stdout=subprocess.DEVNULL)
    return store


def warm_chain(job):
    """One training seed's rounds after the first, each model started from the previous one."""
    store, sels, first, rdirs, seeds, options = job
    prev, records = first, []
    for sel, rdir, seed in zip(sels, rdirs, seeds):
        records.append(train_one((store, sel, rdir, seed, {**options, "init": str(Path(prev) / "model")})))
        prev = rdir
    return records


# warm-started arms of the ACDC chain: train_seg options over the quick round for rounds after the first
WARM_ARMS = {"warm": {}, "warm-150": {"iterations": 150}}


def acdc_chain(acdc_dir: Path, out: Path, seeds, jobs: int, arms=("warm",)):
    """ACDC at 128 px, one fixed random chain of picks (2, 3, 4, 5 %): the quick preset's round
    model per training seed, from scratch every round vs warm-started from the previous round's
    (loop --warm-start; ``arms``: WARM_ARMS). Validation Dice chooses; test Dice is reported; a
    dip is a seed whose model at a budget scores under its own model at the budget before."""
    from alseg_cli.api import select

    store = _acdc_store(acdc_dir, out)
    sels, prev = [], None
    for r, budget in enumerate(CHAIN_BUDGETS):
        sel = out / f"acdc-chain-random-{budget.rstrip('%')}.json"
        if not sel.exists():
            select(method="random", budget=budget, dataset=store, labeled=prev, seed=r, out=sel)
        sels.append(str(sel))
        prev = sel
    options = {**ACDC_QUICK, **ACDC_RECIPES["quick"]}
    root, n = out / "acdc-chain", len(sels)
    fresh = [(str(store), sels[r], str(root / "scratch" / f"seed{s}" / f"round{r}"), s * 1000 + r, options)
             for s in seeds for r in range(n)]
    log(f"ACDC chain: {len(fresh)} models from scratch, then {len(seeds)} warm-started chains per arm ...")
    with ProcessPoolExecutor(jobs) as pool:
        scratch = list(pool.map(train_one, fresh))
        table = {"scratch": [scratch[i * n:(i + 1) * n] for i in range(len(seeds))]}
        for arm in arms:
            warm_jobs = [(str(store), sels[1:], str(root / "scratch" / f"seed{s}" / "round0"),
                          [str(root / arm / f"seed{s}" / f"round{r}") for r in range(1, n)],
                          [s * 1000 + r for r in range(1, n)], {**options, **WARM_ARMS[arm]}) for s in seeds]
            # round 0 is the same model: every arm starts from the scratch chain's first round
            table[arm] = [[scratch[i * n]] + w for i, w in enumerate(pool.map(warm_chain, warm_jobs))]
    print("\n| ACDC 128 px, random chain fixed, quick round | " + " | ".join(CHAIN_BUDGETS)
          + " | dips (test / val) | collapsed | CPU s/model after round 1 |\n|---|" + "---|" * (n + 3))
    summary = {}
    for name, chains in table.items():
        val = np.array([[r["model"]["members"][r["model"]["best_member"]]["best_val_dice"] * 100 for r in c]
                        for c in chains])
        test = np.array([[r["test_dice"] * 100 for r in c] for c in chains])
        dips_t, dips_v = int((np.diff(test, axis=1) < 0).sum()), int((np.diff(val, axis=1) < 0).sum())
        bad = sum(bool(r["model"].get("degenerate")) for c in chains for r in c)
        cpu = np.mean([r["seconds"] for c in chains for r in c[1:]])
        cells = [f"val {val[:, j].mean():.1f}, test {test[:, j].mean():.1f} (sd {test[:, j].std(ddof=1):.1f})"
                 for j in range(n)]
        print(f"| {name} | " + " | ".join(cells) + f" | {dips_t} / {dips_v} | {bad} | {cpu:.0f} |")
        summary[name] = {"val": val.tolist(), "test": test.tolist(), "dips_test": dips_t, "dips_val": dips_v,
                         "collapsed": bad, "cpu_s": float(cpu)}
    (out / "acdc-chain-summary.json").write_text(json.dumps(summary, indent=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--recipes", default="today,quick", help=f"of {', '.join(RECIPES)}")
    p.add_argument("--methods", default="random,coreset,gcl-coreset")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="/tmp/alseg-stability")
    p.add_argument("--acdc", type=Path, help="ACDC folder: also the training-seed spread at 5 %% on ACDC 128 px")
    p.add_argument("--acdc-only", action="store_true", help="only the ACDC part")
    p.add_argument("--acdc-chain", action="store_true", help="the ACDC part as a chain of rounds (2-5 %%): "
                   "models from scratch vs warm-started from the previous round's")
    p.add_argument("--chain-arms", default="warm", help=f"warm-started arms of --acdc-chain, of "
                   f"{', '.join(WARM_ARMS)}")
    p.add_argument("--acdc-recipes", default="today,sgd-balanced,adamw,adamw-1e-3-val50,quick",
                   help=f"of {', '.join(ACDC_RECIPES)}")
    a = p.parse_args(argv)
    recipes = a.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")
    import torch

    torch.set_num_threads(1)
    from alseg_cli.prep import write_phantom_store

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.acdc is not None and not a.acdc.is_dir():
        p.error(f"--acdc {a.acdc}: not a folder")
    if a.acdc is not None and a.acdc_chain:
        return acdc_chain(a.acdc, out, list(range(a.seeds)), a.jobs, a.chain_arms.split(","))
    if a.acdc is not None and a.acdc_only:
        return acdc_spread(a.acdc, out, list(range(a.seeds)), a.acdc_recipes.split(","), a.jobs)
    store = out / "data.zarr"
    if not store.exists():
        write_phantom_store(store, size=64)            # what `alseg prep phantoms --size 64` writes
    seeds, methods = list(range(a.seeds)), a.methods.split(",")
    log(f"picks for {len(methods)} methods x {len(seeds)} seeds x budgets {BUDGETS} ...")
    picks = make_picks(store, out, seeds, methods)
    jobs, keys = [], []
    for name in recipes:
        options = {**DEMO, **RECIPES[name]}
        for (method, seed, pct), sel in picks.items():
            r = BUDGETS.index(pct)
            jobs.append((str(store), str(sel), str(out / "models" / name / method / f"seed{seed}" / f"round{pct}"),
                         seed * 1000 + r, options))
            keys.append((name, method, seed, pct))
    log(f"{len(jobs)} round models on {a.jobs} process(es) ...")
    t0 = time.time()
    with ProcessPoolExecutor(a.jobs) as pool:
        records = list(pool.map(train_one, jobs))
    log(f"done in {time.time() - t0:.0f} s")
    rows = [summarise(n, [rec for k, rec in zip(keys, records) if k[0] == n]) for n in recipes]
    print("| recipe | models | collapsed | retried | every class alive by it. (median) | val Dice mean ± sd | "
          "test Dice mean ± sd | test min | CPU s/model | collapse reasons |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        why = "; ".join(f"{k}: {v}" for k, v in r["why"].items()) or "-"
        print(f"| {r['recipe']} | {r['models']} | {r['collapsed']} | {r['retried']} | {r['alive_median']:.0f} | "
              f"{r['val_mean']:.1f} ± "
              f"{r['val_sd']:.1f} | {r['test_mean']:.1f} ± {r['test_sd']:.1f} | {r['test_min']:.1f} | "
              f"{r['cpu_s']:.1f} | {why} |")
    # per method and budget: test Dice over seeds for each recipe (does it rise with the budget?)
    print("\n| recipe | method | " + " | ".join(f"{b} %" for b in BUDGETS) + " |")
    print("|---|---|" + "---|" * len(BUDGETS))
    for n in recipes:
        for method in methods:
            cells = []
            for pct in BUDGETS:
                d = [rec["test_dice"] * 100 for k, rec in zip(keys, records) if k[:2] == (n, method) and k[3] == pct]
                cells.append(f"{np.mean(d):.1f} (min {np.min(d):.1f})")
            print(f"| {n} | {method} | " + " | ".join(cells) + " |")
    (out / f"summary-{'-'.join(recipes)}.json").write_text(json.dumps(rows, indent=1, default=float))
    if a.acdc is not None:
        acdc_spread(a.acdc, out, list(range(a.seeds)), a.acdc_recipes.split(","), a.jobs)


if __name__ == "__main__":
    main()
