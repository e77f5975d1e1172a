"""MC-dropout scoring (BALD): alseg's prediction path vs the plain loop of passes, same run, same threads.

    python benchmarks/bench_score.py [--store DATA.zarr] [--size 128] [--slices 96] [--samples 10]

The plain loop is what a user writes: dropout modules in train mode, batch-norm in eval,
``torch.no_grad()``, one forward per pass over each batch. alseg's path draws the same dropout
masks up front and runs the passes with folded batch-norm, channels-last activations and the
deterministic stem once per slice (alseg_cli/segmentation/mc.py). Both score the same slices
with the same seeds; the largest BALD difference between them is printed (float rounding).
The per-round figure extrapolates to --pool slices (ACDC 128 px's unlabelled pool is ~1,100).
It also prints the arithmetic floor of a round: the passes' floating-point operations (counted
by torch's FlopCounterMode) at the rate of a large float32 matrix product on the same threads,
timed in the same run, the most a CPU kernel sustains.
Without --store, phantoms at --size are written to a temporary folder.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def plain_scores(net, store, idx, samples, seed, batch):
    from alseg_cli.acquisition.scores import bald, reduce_pixels
    from alseg_cli.segmentation.predict import enable_mc_dropout

    enable_mc_dropout(net)
    out = []
    with torch.no_grad():
        for start in range(0, idx.size, batch):
            x = torch.from_numpy(store.images(idx[start:start + batch]))
            torch.manual_seed(seed * 1_000_003 + start)
            probs = torch.stack([net(x).float().softmax(1) for _ in range(samples)])
            out.append(reduce_pixels(bald(probs)).numpy())
    net.eval()
    return np.concatenate(out)


def alseg_scores(model_dir, store, idx, samples, seed, batch):
    from alseg_cli.acquisition.scores import bald, reduce_pixels
    from alseg_cli.segmentation.predict import iter_predictions

    return np.concatenate([reduce_pixels(bald(p)).numpy() for _, p in iter_predictions(
        [model_dir], store, idx, mode="mc", samples=samples, seed=seed, device="cpu", batch_size=batch)])


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GEMM rate on the current threads: the ceiling for convolution kernels."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def pass_gflop(net, size: int, channels: int) -> float:
    """Floating-point operations of one eval forward over one slice, in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, channels, size, size))
    return counter.get_total_flops() / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--slices", type=int, default=96, help="slices scored by each path")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pool", type=int, default=1100, help="pool size the per-round time is given for")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    from alseg_cli.prep import write_phantom_store
    from alseg_cli.segmentation.predict import load_model
    from alseg_cli.segmentation.train import train_seg
    from alseg_cli.store import DatasetStore

    with tempfile.TemporaryDirectory() as tmp:
        store_path = a.store
        if store_path is None:
            store_path = Path(tmp) / "data.zarr"
            write_phantom_store(store_path, patients=12, size=a.size, slices=10, seed=0)
        # a briefly trained model: its weights do not change the cost, only the scores
        model_dir = Path(tmp) / "model"
        train_seg(store_path, "all", model_dir, iterations=20, val_every=20, base_channels=a.base_channels,
                  size=a.size, seed=0, progress=False, device="cpu")
        store = DatasetStore(store_path)
        idx = store.indices("train")[: a.slices]
        net = load_model(model_dir, device="cpu")
        gflop = pass_gflop(net, a.size, store.channels)
        gemm = matmul_gflops()
        times = {"plain": [], "alseg": []}
        for _ in range(a.repeats):          # alternate the two paths so drift hits both
            t = time.perf_counter()
            want = plain_scores(net, store, idx, a.samples, 0, a.batch_size)
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = alseg_scores(model_dir, store, idx, a.samples, 0, a.batch_size)
            times["alseg"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    per = {k: v / idx.size for k, v in best.items()}
    print(f"BALD, {a.samples} MC passes, {idx.size} slices at {a.size} px, base {a.base_channels}, "
          f"{a.threads} thread(s), best of {a.repeats}")
    for k in ("plain", "alseg"):
        print(f"  {k:6s} {per[k] * 1000:7.1f} ms/slice  -> {per[k] * a.pool / 60:5.2f} min per {a.pool}-slice round")
    print(f"  ratio alseg/plain speed: {best['plain'] / best['alseg']:.2f}x;  max |BALD difference| "
          f"{np.abs(want - got).max():.2e} (scores up to {np.abs(want).max():.2e})")
    floor = gflop * a.samples * a.pool / gemm
    print(f"  floor: {gflop:.2f} GFLOP per pass and slice at the measured {gemm:.0f} GFLOP/s float32 GEMM "
          f"-> {floor / 60:.2f} min per round; alseg runs at {floor / (per['alseg'] * a.pool):.0%} of that rate")


if __name__ == "__main__":
    main()
