"""3D U-Net training steps on CPU: alseg's 3x3x3 convolutions (one 2D convolution over depth-
stacked slices, segmentation/nets.py Conv3x3x3) against the same network with plain
``nn.Conv3d``, same weights, same batch, same threads, alternated.

    python benchmarks/bench_unet3d.py [--depth 9] [--size 128] [--base-channels 16] [--steps 3]

A batch is one thick-slice volume, as the loop's unet3d rounds train on ACDC (depth ~9-10 at
128 px). Prints seconds per step (forward, backward, AdamW) of each, their ratio, and the
largest relative difference of the two networks' outputs.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def step_seconds(net, x, y, steps: int) -> float:
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    best = float("inf")
    for _ in range(steps):
        t = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=9)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--inplane-levels", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per path and repeat (best counts)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from alseg_cli.segmentation.nets import Conv3x3x3, UNet3D

    torch.manual_seed(0)
    alseg = UNet3D(1, 4, a.base_channels, inplane_levels=a.inplane_levels)
    plain = copy.deepcopy(alseg)
    for m in plain.modules():
        if isinstance(m, Conv3x3x3):
            m.forward = nn.Conv3d.forward.__get__(m)      # ATen's own 3D convolution
    x = torch.randn(1, 1, a.depth, a.size, a.size)
    y = torch.randint(0, 4, (1, a.depth, a.size, a.size))
    with torch.no_grad():
        want, got = plain(x), alseg(x)
    diff = float((got - want).abs().max() / want.abs().max())
    times = {"plain": [], "alseg": []}
    for _ in range(a.repeats):
        times["plain"].append(step_seconds(plain, x, y, a.steps))
        times["alseg"].append(step_seconds(alseg, x, y, a.steps))
    best = {k: min(v) for k, v in times.items()}
    print(f"3D U-Net training step, 1 x {a.depth} x {a.size} x {a.size} volume, base {a.base_channels}, "
          f"{a.threads} thread(s), best of {a.repeats * a.steps}")
    print(f"  nn.Conv3d    {best['plain']:6.2f} s/step\n  Conv3x3x3    {best['alseg']:6.2f} s/step")
    print(f"  ratio: {best['plain'] / best['alseg']:.2f}x;  max relative output difference {diff:.1e}")


if __name__ == "__main__":
    main()
