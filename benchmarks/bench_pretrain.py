"""Benchmark: slices/s of `alseg pretrain` and `alseg embed` against a plain torchvision
ResNet-18 loop on the same inputs, in the same run (the ratio is the figure), with peak memory.

    python benchmarks/bench_pretrain.py [--dataset D.zarr --split train] [--size 64] [--epochs 1]
    python benchmarks/bench_pretrain.py --compare EMB_A.zarr EMB_B.zarr [--k 10]

--compare measures what the metric does: silhouette of seeded k-means clusters (Euclidean,
as the coreset uses) and the mean distance of a slice to the other slices of its own
volume versus to slices of other volumes (ratio < 1: volumes are tight).

Without --dataset a phantom store (12 patients, 64 px) is made in a temporary folder.
The plain embedding loop reads the slices from the store in one zarr call (timed, as embed
reads them too) and runs a torchvision ResNet-18 trunk over them in batches; embed's own
rate counts its loop from the first read to the last vector, the encoder load excluded;
pretrain's counts its training loop, the checkpoint written after each epoch (weights and Adam
state, ~130 MB, for --resume) excluded and printed beside it.
The plain training loop does what pretrain does minus alseg's work: the same number of images per
step (2 views x batch), forward, a cross-entropy on fixed labels, backward, Adam; no
sampler, no augmentation, no group losses. Its slices/s counts a slice per 2 images, as
pretrain does. Prints one JSON line on stdout; a table on stderr.
"""
from __future__ import annotations

import argparse
import atexit
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def peak_mb(dev) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB -> MiB (process peak)


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def plain_train(images, batch, epochs, dev, amp):
    from alseg_cli.encoders.models import resnet_trunk

    torch.manual_seed(0)
    net = resnet_trunk("resnet18", images.shape[1])
    net.fc = torch.nn.Linear(512, 10)
    net = net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-4, weight_decay=1e-6)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x_all = images.to(dev)
    n = x_all.shape[0]
    labels = torch.arange(2 * batch, device=dev) % 10
    sync(dev)
    t0, seen = time.perf_counter(), 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(dev)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            x = torch.cat([x_all[idx], x_all[idx]])
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                loss = F.cross_entropy(net(x), labels[: x.shape[0]])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += idx.numel()
    sync(dev)
    return seen / (time.perf_counter() - t0)


@torch.no_grad()
def plain_embed(store, idx, batch, dev, amp):
    """Read the slices with one zarr call (timed: embed reads them too), then batched inference."""
    from alseg_cli.encoders.models import resnet_trunk

    net = resnet_trunk("resnet18", store.channels).to(dev).eval()
    sync(dev)
    t0 = time.perf_counter()
    images = torch.from_numpy(store.images(idx))
    for start in range(0, images.shape[0], batch):
        x = images[start:start + batch].to(dev)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            net(x).float().cpu()
    sync(dev)
    return images.shape[0] / (time.perf_counter() - t0)


def kmeans(x, k, seed=0, iters=100):
    """Seeded k-means++ then Lloyd iterations (numpy, float64)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
    c = np.array(centres)
    for _ in range(iters):
        lab = (((x[:, None] - c[None]) ** 2).sum(-1)).argmin(1)
        new = np.array([x[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return lab


def silhouette(d, lab):
    """Mean silhouette from a full distance matrix (fine for a few thousand slices)."""
    import numpy as np

    s = np.zeros(len(lab))
    for i in range(len(lab)):
        same = lab == lab[i]
        if same.sum() <= 1:
            continue
        a = d[i, same].sum() / (same.sum() - 1)
        b = min(d[i, lab == j].mean() for j in np.unique(lab) if j != lab[i])
        s[i] = (b - a) / max(a, b)
    return float(s.mean())


def compare(paths, k):
    import numpy as np

    from alseg_cli.store import DatasetStore, EmbeddingsStore

    out = {}
    for path in paths:
        emb = EmbeddingsStore(path)
        x = emb.vectors().astype(np.float64)
        ds = DatasetStore(emb.attrs["dataset"])
        vol = ds.volumes[ds.ids_to_indices(emb.slice_ids)]
        sq = (x * x).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))   # no (N, N, D) tensor
        np.fill_diagonal(d, 0)
        same = vol[:, None] == vol[None]
        np.fill_diagonal(same, False)
        other = vol[:, None] != vol[None]
        own_mean = float((d * same).sum() / same.sum())
        other_mean = float((d * other).sum() / other.sum())
        out[str(path)] = {"encoder": emb.attrs["encoder"], "slices": len(x),
                          "silhouette_kmeans": {str(kk): silhouette(d, kmeans(x, kk)) for kk in k},
                          "silhouette_volumes": silhouette(d, np.unique(vol, return_inverse=True)[1]),
                          "mean_dist_own_volume": own_mean, "mean_dist_other_volumes": other_mean,
                          "own_over_other": own_mean / other_mean}
        r = out[str(path)]
        print(f"{path}: silhouette k-means {r['silhouette_kmeans']}, by volume {r['silhouette_volumes']:.3f}; "
              f"own-volume {own_mean:.3f} vs other {other_mean:.3f} (ratio {r['own_over_other']:.3f})",
              file=sys.stderr)
    print(json.dumps(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, help="dataset store (default: phantoms in a temp folder)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--groups", default="patient,volume")
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed embedding runs per path (best counts)")
    ap.add_argument("--train-repeats", type=int, default=2, help="timed pretraining runs per path (best counts)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--compare", nargs="+", type=Path, help="embedding stores to compare (see above)")
    ap.add_argument("--k", type=int, nargs="+", default=[10], help="k-means cluster counts for --compare")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args.compare, args.k)
    if args.threads:
        torch.set_num_threads(args.threads)

    from alseg_cli.device import resolve_device
    from alseg_cli.encoders.embed import embed
    from alseg_cli.encoders.pretrain import load_pool, parse_groups, pretrain
    from alseg_cli.encoders.sampler import default_batch_size
    from alseg_cli.store import DatasetStore

    dev = resolve_device(args.device)
    amp = dev.type == "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="alseg-bench-"))
    atexit.register(shutil.rmtree, tmp, True)           # temporary stores go when the run ends
    dataset = args.dataset
    if dataset is None:
        from alseg_cli.prep import write_phantom_store
        dataset = tmp / "phantoms.zarr"
        write_phantom_store(dataset, patients=12, size=64, slices=8, seed=0)
    store = DatasetStore(dataset)
    _, images = load_pool(store, args.split, args.size)
    batch = default_batch_size(parse_groups(args.groups))

    # the two training paths alternate, best of --train-repeats each (a shared machine drifts)
    train_rates, plain_train_rates, ckpt_s = [], [], []
    for _ in range(args.train_repeats):
        reset_peak(dev)
        m = pretrain(dataset, tmp / "enc", groups=args.groups, epochs=args.epochs, size=args.size,
                     split=args.split, device=args.device, progress=False, force=True)
        train_rates.append(m["slices_per_s"])
        ckpt_s.append(m["checkpoint_seconds"])
        mem_train = peak_mb(dev)
        reset_peak(dev)
        plain_train_rates.append(plain_train(images, batch, args.epochs, dev, amp))
        mem_plain = peak_mb(dev)
    alseg_train, plain_train_rate = max(train_rates), max(plain_train_rates)
    reset_peak(dev)
    # embedding is fast: each path runs once untimed first (kernel caches, allocator), then the
    # two alternate and the best of --repeats counts
    embed_rates, plain_rates = [], []
    for r in range(args.repeats + 1):
        e = embed(dataset, tmp / "emb.zarr", encoder=str(tmp / "enc"), split=args.split,
                  batch_size=args.embed_batch, device=args.device, progress=False, force=True)
        rate = plain_embed(store, store.indices(args.split), args.embed_batch, dev, amp)
        if r:
            embed_rates.append(e["slices_per_s"])
            plain_rates.append(rate)
    alseg_embed, mem_embed, plain_embed_rate = max(embed_rates), peak_mb(dev), max(plain_rates)

    result = {
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                              f" ({torch.get_num_threads()} threads)"),
        "dataset": str(Path(dataset).resolve()), "split": args.split, "slices": int(images.shape[0]),
        "size": args.size, "epochs": args.epochs, "groups": args.groups, "batch_size": batch,
        "pretrain_slices_per_s": alseg_train, "plain_train_slices_per_s": plain_train_rate,
        "pretrain_ratio": alseg_train / plain_train_rate, "pretrain_checkpoint_s": min(ckpt_s),
        "embed_slices_per_s": alseg_embed, "plain_embed_slices_per_s": plain_embed_rate,
        "embed_ratio": alseg_embed / plain_embed_rate, "embed_load_s": e["load_seconds"],
        "peak_mb": {"pretrain": mem_train, "plain_train": mem_plain, "embed": mem_embed,
                    "kind": "cuda max allocated" if dev.type == "cuda" else "process max RSS (cumulative)"},
    }
    print(f"pretrain {alseg_train:.1f} slices/s vs plain {plain_train_rate:.1f} (ratio {result['pretrain_ratio']:.2f}; "
          f"+{min(ckpt_s):.2f} s writing its checkpoint per epoch, not counted); "
          f"embed {alseg_embed:.1f} vs plain {plain_embed_rate:.1f} (ratio {result['embed_ratio']:.2f}; "
          f"+{e['load_seconds']:.2f} s loading the encoder); "
          f"peak MB {mem_train:.0f}/{mem_plain:.0f}/{mem_embed:.0f} on {result['device']}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
