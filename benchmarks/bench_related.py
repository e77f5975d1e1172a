"""CPU cost of the related papers' methods against the quick round they sit in, same run, one thread.

    python benchmarks/bench_related.py [--store DATA.zarr] [--iterations 30]

Without --store a 128 px phantom store is written to a temporary folder. Prints process-CPU
seconds (robust to other jobs on the machine) and ratios:
- a quick-preset round model (AdamW 1e-3, balanced CE, 16 channels) with and without ARCO
  (unlabelled batch = the batch size, and 2), per iteration;
- one pretraining epoch at 64 px: GCL (patient+volume) vs SP-Con (position+patient[+phase]);
- k-NN propagation of one round (5 % labelled, k 10): the rule by histogram JSD and by
  embeddings, and the pseudo-masks' prediction.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--budget", default="5%")
    a = p.parse_args(argv)
    torch.set_num_threads(1)

    from alseg_cli.acquisition.propagate import propagate
    from alseg_cli.acquisition.select import select
    from alseg_cli.encoders.embed import embed
    from alseg_cli.encoders.pretrain import pretrain
    from alseg_cli.segmentation.train import train_seg

    tmp = Path(tempfile.mkdtemp(prefix="bench-related-"))
    store = a.store
    if store is None:
        from alseg_cli.prep import write_phantom_store
        store = tmp / "data.zarr"
        write_phantom_store(store, patients=20, size=128, slices=10, seed=0)
    sel = tmp / "sel.json"
    select(method="random", budget=a.budget, dataset=store, seed=0, out=sel, device="cpu")
    quick = dict(iterations=a.iterations, base_channels=16, device="cpu", progress=False, val_every=10 ** 6,
                 optimizer="adamw", lr=1e-3, class_weights="balanced", seed=0)
    rows = {}
    rows["unet"], _ = cpu(lambda: train_seg(store, str(sel), tmp / "plain", **quick))
    rows["unet+arco"], _ = cpu(lambda: train_seg(store, str(sel), tmp / "arco", semi="arco", **quick))
    rows["unet+arco (unlabelled batch 2)"], _ = cpu(lambda: train_seg(
        store, str(sel), tmp / "arco2", semi="arco", semi_options={"unlabelled_batch": 2}, **quick))
    base = rows["unet"]
    print(f"round model, {a.iterations} iterations, CPU s per iteration (ratio to the plain round):")
    for name, sec in rows.items():
        print(f"  {name:<32} {sec / a.iterations:6.3f}   x{sec / base:.2f}")

    times = {"gcl": [], "sp-supcon": []}
    for _ in range(2):          # alternated, the lower of two counts
        for loss in times:
            times[loss].append(cpu(lambda: pretrain(store, tmp / loss, loss=loss, epochs=1, size=64, force=True,
                                                    progress=False, device="cpu"))[0])
    gcl, sp = min(times["gcl"]), min(times["sp-supcon"])
    print(f"pretraining epoch at 64 px: GCL {gcl:.1f} CPU s, SP-Con {sp:.1f} CPU s (x{sp / gcl:.2f})")

    embed(store, tmp / "e.zarr", encoder=str(tmp / "sp-supcon"), device="cpu", progress=False)
    hist, m = cpu(lambda: propagate(store, str(sel), tmp / "plain", tmp / "p1", k=10, device="cpu"))
    emb, m2 = cpu(lambda: propagate(store, str(sel), tmp / "plain", tmp / "p2", k=10, metric="embedding",
                                    embeddings=tmp / "e.zarr", device="cpu"))
    print(f"k-NN propagation, one round at {a.budget}: hist-jsd {hist:.1f} CPU s ({m['count']} of {m['pool']} "
          f"pseudo-labelled), embedding {emb:.1f} CPU s ({m2['count']}); x{hist / base:.2f} / x{emb / base:.2f} "
          f"of the round model's {a.iterations} iterations")
    print(json.dumps({"cpu_seconds": rows, "iterations": a.iterations, "pretrain_epoch": {"gcl": gcl, "sp-supcon": sp},
                      "propagate": {"hist-jsd": hist, "embedding": emb, "count": m["count"], "count_embedding": m2["count"]}}))


if __name__ == "__main__":
    main()
