"""Benchmark `select`: k-center greedy speed (pruned kernel vs brute force vs a naive greedy), exactness; method times.

    python benchmarks/bench_select.py [--sizes 20000,100000] [--dim 512] [--acdc /tmp/acdc128.zarr]

For each data kind (``--data``: isotropic Gaussian, where pruning cannot help, and a
mixture of 1,000 Gaussians in a 32-dim subspace plus noise, where it can) and each N:
float32 vectors (d = 512), 10% labelled, budget 1% of N.
- alseg: time of the labelled initialisation and time per pick of ``kcenter_greedy`` (the
  pruned kernel on CPU), and the rows of the vectors it read per pick.
- brute: the same function with every distance recomputed each pick (the previous kernel);
  its picks must be the same.
- naive: the strongest simple greedy, float64 data and one ``scipy.spatial.distance.cdist``
  of all points to the new centre per step; at large N only ``--naive-steps`` steps are
  timed and the per-pick time is extrapolated.
- bandwidth: bytes of the vectors read per pick / time per pick, against a numpy ``sum``
  over the same array in the same run (the machine's measured read bandwidth).
- exactness (N <= --exact-max): a full float64 greedy from the same labelled set; overlap of
  the picks and the ratio of covering radii (1.0 up to ties).
Then every registered method's selection time on the ACDC store when it exists.
Prints a Markdown table on stdout; progress on stderr.
"""
from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def best_time(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def naive_greedy(x, labeled, picks, steps=None, first=None):
    """The strongest simple greedy a user would write: float64 data, one
    ``scipy.spatial.distance.cdist`` to each new centre, picked points set to -1 in place.
    Returns (picks, min_d, s/step)."""
    from scipy.spatial.distance import cdist

    x = np.asarray(x, dtype=np.float64)        # cdist converts float32 on every call otherwise
    min_d = np.full(x.shape[0], np.inf)
    # initial distances, in blocks of centres (skipped when only the per-step time is wanted)
    for s in range(0, len(labeled) if steps is None else 0, 1024):
        min_d = np.minimum(min_d, cdist(x, x[labeled[s:s + 1024]]).min(1))
    min_d[labeled] = -1
    out = []
    if first is not None:                 # no labelled set: start from alseg's seeded first centre
        out.append(int(first))
        np.minimum(min_d, cdist(x, x[first][None]).ravel(), out=min_d)
        min_d[first] = -1
        picks -= 1
    n_steps = picks if steps is None else min(steps, picks)
    t = time.perf_counter()
    for _ in range(n_steps):
        c = int(np.argmax(min_d))
        out.append(c)
        np.minimum(min_d, cdist(x, x[c][None]).ravel(), out=min_d)
        min_d[c] = -1
    return out, min_d, (time.perf_counter() - t) / n_steps


def clustered(n, dim, rng, k=1000, sub=32):
    """A mixture of k Gaussians in a sub-dimensional subspace of dim dimensions, plus noise:
    low intrinsic dimension, as learned embeddings have (where pruning helps)."""
    basis = np.linalg.qr(rng.standard_normal((dim, sub)))[0].astype(np.float32)
    centres = rng.normal(0, 5, (k, sub)).astype(np.float32)
    z = centres[rng.integers(0, k, n)] + rng.normal(0, 0.5, (n, sub)).astype(np.float32)
    return (z @ basis.T + rng.normal(0, 0.05, (n, dim)).astype(np.float32)).astype(np.float32)


def peak_reset() -> int:
    """Reset the process's peak RSS (Linux clear_refs 5); returns the current RSS in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS") * 1024
    except OSError:
        return -1


def peak_extra(rss_before: int) -> float:
    """MiB the peak RSS rose above ``rss_before`` since peak_reset (NaN where unsupported)."""
    return float("nan") if rss_before < 0 else (_status_kb("VmHWM") * 1024 - rss_before) / 2**20


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(key)


def make_data(data, n, dim, rng):
    """Synthetic vectors, or an embeddings store's (``data`` is its path)."""
    if data == "clustered":
        return clustered(n, dim, rng)
    if data == "iso":
        return rng.standard_normal((n, dim), dtype=np.float32)
    from alseg_cli.store import EmbeddingsStore
    return np.asarray(EmbeddingsStore(data).vectors(), dtype=np.float32)


def bench_kernel(n, dim, budget_frac, labeled_frac, naive_steps, exact_max, max_picks, device, data="iso",
                 dtype="float32", brute_picks=0, repeats=1, update="auto"):
    import torch

    from alseg_cli import kcenter_greedy
    from alseg_cli.acquisition.kcenter import covering_radius
    from alseg_cli.device import resolve_device

    rng = np.random.default_rng(0)
    x = make_data(data, n, dim, rng)
    n, dim = x.shape
    if dtype == "float16":
        x = x.astype(np.float16)
    lab = np.sort(rng.choice(n, int(n * labeled_frac), replace=False))
    budget = max(1, int(n * budget_frac))
    picks_timed = min(budget, max_picks) if max_picks else budget
    brute_timed = min(picks_timed, brute_picks) if brute_picks else picks_timed
    dev = resolve_device(device)
    read_s = best_time(lambda: x.sum(dtype=np.float32))
    bandwidth = x.nbytes / read_s
    xt = torch.from_numpy(x).to(dev)
    name = Path(data).stem if data not in ("iso", "clustered") else data
    log(f"{name} N={n} {dtype}: greedy {picks_timed} picks from {lab.size} labelled, then the brute-force "
        f"kernel (every distance each pick, {brute_timed} picks), alternated {repeats} time(s) ...")
    loops, brute_loops, init_s = [], [], []
    for r in range(repeats):        # alternated, best counted: the first call also warms torch up
        st, st_brute = {}, {}
        rss = peak_reset()
        ours = kcenter_greedy(xt, picks_timed, labeled=lab, device=dev, stats=st, update=update)
        if r == 0:
            peak = peak_extra(rss)
        brute = kcenter_greedy(xt, brute_timed, labeled=lab, device=dev, stats=st_brute,
                               update="filtered" if dev.type == "cpu" else "direct")
        loops.append(st["loop_s"])
        brute_loops.append(st_brute["loop_s"])
        init_s.append(st["init_s"])
    t_init = min(init_s)
    per_pick = min(loops) / picks_timed
    brute_pick = min(brute_loops) / brute_timed
    exact = n <= exact_max and picks_timed == budget and dtype == "float32"
    log(f"{name} N={n}: naive reference ({'full' if exact else f'{naive_steps} steps'}) ...")
    ref, ref_min, naive_pick = naive_greedy(x, lab, budget, steps=None if exact else naive_steps,
                                            first=None if lab.size else ours[0])
    row = {"N": n, "d": dim, "data": name, "dtype": dtype, "labelled": int(lab.size), "budget": budget,
           "picks_timed": picks_timed, "brute_picks_timed": brute_timed, "device": str(dev), "init_s": t_init,
           "alseg_ms_per_pick": per_pick * 1e3, "peak_extra_MiB": peak, "data_MiB": x.nbytes / 2**20,
           "brute_ms_per_pick": brute_pick * 1e3, "vs_brute": brute_pick / per_pick,
           "same_as_brute": brute == ours[:brute_timed],
           "rows_read_per_pick": (st.get("rows_read") or 0) / picks_timed,
           "naive_ms_per_pick": naive_pick * 1e3, "speedup": naive_pick / per_pick,
           "numpy_sum_GBps": bandwidth / 1e9, "alseg_GBps": x.nbytes / per_pick / 1e9,
           "bandwidth_ratio": x.nbytes / per_pick / bandwidth}
    if exact:
        r_ours = covering_radius(x, np.concatenate([lab, ours]))
        r_ref = float(ref_min.max())                    # cdist gives distances, not squares
        row.update({"overlap": len(set(ours) & set(ref)) / budget, "same_order": ours == ref,
                    "radius_ratio": r_ours / r_ref})
    return row


def bench_methods(acdc, device, mc_samples=40):
    """Selection time of every method on the ACDC store (a tiny model for model methods)."""
    import torch
    import torch.nn.functional as F

    from alseg_cli.acquisition import METHODS
    from alseg_cli.acquisition.select import select
    from alseg_cli.store import DatasetStore, write_embeddings

    ds = DatasetStore(acdc)
    tmp = Path(tempfile.mkdtemp(prefix="bench_select_"))
    atexit.register(shutil.rmtree, tmp, True)           # temporary stores go when the run ends
    imgs = torch.from_numpy(ds.images())
    vec = F.interpolate(imgs, size=(32, 32), mode="area").reshape(len(ds), -1).numpy()
    write_embeddings(tmp / "emb.zarr", vec, ds.slice_ids.tolist(),
                     {"dataset": str(acdc), "encoder": {"kind": "pixels-32", "gcl": False}})
    r0 = tmp / "r0.json"
    select(method="random", budget="2%", dataset=acdc, seed=0, out=r0)
    model = None
    try:
        from alseg_cli.segmentation.train import train_seg

        log("ACDC: training a tiny 2-member model for the model-based methods ...")
        train_seg(acdc, str(r0), tmp / "model", base_channels=4, iterations=20, min_iterations=1,
                  batch_size=4, val_every=20, ensemble=2, seed=0, device=device, progress=False)
        model = str(tmp / "model")
    except Exception as exc:  # report, do not hide
        log(f"ACDC: no model ({exc.__class__.__name__}: {exc}); model methods skipped")
    rows = []
    for name in METHODS.names():
        needs = METHODS.info(name)["needs"]
        if needs in ("model", "ensemble") and model is None:
            continue
        kw = {"embeddings": tmp / "emb.zarr"}
        if name == "gcl-coreset":
            continue                                    # needs GCL embeddings; same kernel as coreset
        if needs in ("model", "ensemble"):
            kw = {"models": [model]}
        log(f"ACDC: {name} ...")
        m = select(method=name, budget="5%", labeled=r0, seed=0, device=device, dataset=acdc,
                   mc_samples=mc_samples, **kw)
        rows.append({"method": name, "needs": needs, "added": m["budget"]["added"],
                     "pool": m["budget"]["pool"], "seconds": m["seconds"]})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="20000,100000")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--budget-frac", type=float, default=0.01)
    p.add_argument("--labeled-frac", type=float, default=0.10)
    p.add_argument("--naive-steps", type=int, default=5)
    p.add_argument("--exact-max", type=int, default=20000)
    p.add_argument("--max-picks", type=int, default=0, help="time at most this many picks (0: the budget)")
    p.add_argument("--device", default="auto")
    p.add_argument("--acdc", default="/tmp/acdc128.zarr")
    p.add_argument("--skip-methods", action="store_true")
    p.add_argument("--skip-kernel", action="store_true")
    p.add_argument("--mc-samples", type=int, default=40, help="MC passes for bald/mc-variance on ACDC")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", default="iso,clustered",
                   help="iso (isotropic Gaussian), clustered, and/or paths of embeddings stores (their own N, d)")
    p.add_argument("--dtypes", default="float32", help="storage of the vectors: float32 and/or float16")
    p.add_argument("--labeled-fracs", default=None, help="several labelled fractions, e.g. 0,0.1")
    p.add_argument("--repeats", type=int, default=2,
                   help="alternated runs of the two kernels, best counted (1 at N >= 500k: the init is long)")
    p.add_argument("--brute-picks", type=int, default=0,
                   help="time the brute kernel over only this many picks (0: as many as alseg's)")
    p.add_argument("--update", default="auto", choices=["auto", "pruned"],
                   help="alseg's kernel: select's choice (auto: pruned from 20,000 points on) or pruned always")
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    sizes = [] if a.skip_kernel else [int(n) for n in a.sizes.split(",") if n]
    fracs = [float(f) for f in a.labeled_fracs.split(",")] if a.labeled_fracs else [a.labeled_frac]
    synthetic = [d for d in a.data.split(",") if d in ("iso", "clustered")]
    stores = [d for d in a.data.split(",") if d and d not in ("iso", "clustered")]
    jobs = [(d, n) for d in synthetic for n in sizes] + [(d, 0) for d in stores]
    print("| data | N | d | dtype | labelled | picks timed | device | init s | alseg ms/pick | brute ms/pick | "
          "vs brute | naive ms/pick | vs naive | rows read/pick | alseg GB/s | peak extra MiB (data) | "
          "overlap | radius ratio |")
    print("|" + "---|" * 18)
    rows = []
    for data, n in jobs:
        for dtype in a.dtypes.split(","):
            for frac in fracs:
                r = bench_kernel(n, a.dim, a.budget_frac, frac, a.naive_steps, a.exact_max, a.max_picks,
                                 a.device, data, dtype, a.brute_picks, a.repeats if (n or 0) < 500_000 else 1,
                                 a.update)
                rows.append(r)
                print(f"| {r['data']} | {r['N']} | {r['d']} | {r['dtype']} | {r['labelled']} | {r['picks_timed']} | "
                      f"{r['device']} | {r['init_s']:.2f} | {r['alseg_ms_per_pick']:.2f} | "
                      f"{r['brute_ms_per_pick']:.2f} | {r['vs_brute']:.2f}x"
                      f"{'' if r['same_as_brute'] else ' (picks differ!)'} | {r['naive_ms_per_pick']:.2f} | "
                      f"{r['speedup']:.1f}x | {r['rows_read_per_pick']:.0f} | {r['alseg_GBps']:.2f} | "
                      f"{r['peak_extra_MiB']:.0f} ({r['data_MiB']:.0f}) | {r.get('overlap', '-')} | "
                      f"{r.get('radius_ratio', '-')} |", flush=True)
    if not a.skip_methods and Path(a.acdc).exists():
        mrows = bench_methods(a.acdc, a.device, a.mc_samples)
        print("\n| method | needs | added | pool | seconds |\n|---|---|---|---|---|")
        for r in mrows:
            print(f"| {r['method']} | {r['needs']} | {r['added']} | {r['pool']} | {r['seconds']:.2f} |")
    elif not a.skip_methods:
        log(f"{a.acdc} not found: per-method ACDC timings skipped")
    print(json.dumps({"kernel": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
