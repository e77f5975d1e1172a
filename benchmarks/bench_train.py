"""Iterations/s of alseg's trainer vs a minimal plain-torch UNet loop on the same batch, same run.

    python benchmarks/bench_train.py [--store DATA.zarr] [--size 128] [--iterations 40] [--base-channels 16]

Without --store a phantom store is written to a temporary folder. alseg's number is the
trainer's own count (sampling, augmentation, 0.5*(CE+Dice), poly lr, checkpoints; the
validation pass is timed separately and excluded); the plain loop repeats forward/CE/backward/SGD on one fixed batch of
the same network, in the default layout and in channels-last (alseg trains the UNet
channels-last). alseg/plain above 1.0: faster than the loop a user writes first; alseg/plain
channels-last is the trainer's overhead over the same layout (1.0 = none).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def plain_loop(images, masks, iterations, base_channels, num_classes, device, channels_last=False):
    from alseg_cli.segmentation.nets import UNet

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    net = UNet(images.shape[1], num_classes, base_channels).to(device).train().to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = images.to(device).contiguous(memory_format=fmt), masks.to(device).long()
    for _ in range(2):  # warm-up, not timed
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(iterations):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="alternated runs of each path (best counts)")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    from alseg_cli.device import resolve_device
    from alseg_cli.segmentation.train import train_seg
    from alseg_cli.store import DatasetStore

    device = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        store_path = a.store
        if store_path is None:
            from alseg_cli.prep import write_phantom_store
            store_path = Path(tmp) / "phantoms.zarr"
            write_phantom_store(store_path, patients=10, size=a.size, slices=6, seed=0)
        store = DatasetStore(store_path)
        idx = store.indices("train")[: a.batch_size]
        images, masks = torch.from_numpy(store.images(idx)), torch.from_numpy(store.masks(idx))
        rates = {"alseg": [], "plain": [], "cl": []}
        for r in range(a.repeats):          # alternated, best of each: this machine's speed drifts
            m = train_seg(store_path, "all", Path(tmp) / f"model{r}", iterations=a.iterations,
                          val_every=a.iterations, base_channels=a.base_channels, batch_size=a.batch_size,
                          device=str(device), progress=False)
            rates["alseg"].append(m["members"][0]["train_it_per_s"])  # validation time excluded
            rates["plain"].append(plain_loop(images, masks, a.iterations, a.base_channels, store.num_classes,
                                             device))
            rates["cl"].append(plain_loop(images, masks, a.iterations, a.base_channels, store.num_classes,
                                          device, True))
        alseg_rate, plain_rate, cl_rate = (max(rates[k]) for k in ("alseg", "plain", "cl"))
    result = {"device": str(device), "size": store.size, "batch_size": a.batch_size,
              "base_channels": a.base_channels, "iterations": a.iterations, "threads": a.threads,
              "alseg_it_per_s": round(alseg_rate, 3), "plain_it_per_s": round(plain_rate, 3),
              "plain_channels_last_it_per_s": round(cl_rate, 3),
              "ratio_alseg_over_plain": round(alseg_rate / plain_rate, 3),
              "ratio_alseg_over_plain_channels_last": round(alseg_rate / cl_rate, 3)}
    print(json.dumps(result))
    print(f"alseg {alseg_rate:.2f} it/s, plain torch {plain_rate:.2f} it/s (ratio {alseg_rate / plain_rate:.2f}), "
          f"plain channels-last {cl_rate:.2f} it/s (ratio {alseg_rate / cl_rate:.2f})", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
