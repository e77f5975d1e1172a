"""`alseg pretrain`: contrastive training of a ResNet-18 encoder on a dataset store.

``--loss gcl`` (the default) is the paper's group contrastive loss (method.md section 2);
``--loss sp-supcon`` is Peng et al.'s self-paced supervised contrast over meta-labels
(slice-position partition, patient, cardiac phase; seed-methods.md section 1), with batches
of m volumes x one slice per position partition.

Each step takes one batch of the group sampler, makes two independently augmented views
of every slice (SimCLR augments both views; rows 0..N-1 are view 1, N..2N-1 view 2, so
eq. 4's "slice i and its augmented view" is view 1 and view 2 of i) and minimises eq. 5.

ENCODER_DIR: encoder.pt (GCLEncoder state dict: trunk.* + head.*), config.json,
loss.json, loss.png, manifest.json (kind "encoder") and checkpoint.pt (rewritten after
every epoch with model, optimiser, scaler and history). All randomness of epoch e comes
from generators seeded by (seed, e), so a resumed run repeats what the killed run would
have done.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path, write_json
from ..data.augment import augment
from ..device import load_checkpoint, resolve_device, seed_everything, torch_generator
from ..errors import AlsegError
from ..progress import as_reporter
from ..manifest import make_manifest, save_manifest
from ..store import DatasetStore
from .losses import GROUP_KINDS, SP_MODES, default_weights, gcl_total_loss, sp_total_loss
from .models import GCLEncoder
from .sampler import default_batch_size, group_batches, partition_batches, position_partition

PRESETS = {
    "quick": {"size": 64, "epochs": 3},      # minutes on a CPU; for smoke runs and demos
    "paper": {"size": 256, "epochs": 100},   # method.md: 256 x 256, 100 epochs
}
DEFAULTS = {"epochs": 100, "lr": 3e-4, "weight_decay": 1e-6, "tau": 0.5, "seed": 0,
            "groups": ("patient", "volume"), "split": "train"}
CONFIG_KEYS = ("loss", "groups", "weights", "tau", "size", "batch_size", "lr", "weight_decay", "seed", "split",
               "meta", "lambdas", "gamma_start", "gamma_end", "sp_mode", "partitions", "scans_per_batch",
               "correct_grad", "proj_dim", "epoch_passes")
LOSSES = ("gcl", "sp-supcon")
META_KINDS = ("position", "patient", "phase")
# Peng et al.: tau 0.07, lambdas of table 5 (position 1, patient 0.01, phase 0.001), linear
# self-paced weights with the pace 2 -> 50 of table 4 (power 1/2), S = 3 partitions for ACDC and
# Hippocampus, 10 scans per batch, a 256-d projection.
SP_DEFAULTS = {"tau": 0.07, "lambdas": {"position": 1.0, "patient": 0.01, "phase": 0.001},
               "gamma_start": 2.0, "gamma_end": 50.0, "sp_mode": "linear", "partitions": 3,
               "scans_per_batch": 10, "correct_grad": False, "proj_dim": 256,
               # slices per epoch = 3 x the pool: what a GCL patient+volume epoch shows (every slice
               # leads a tuple of 3), so an SP-Con epoch costs a GCL epoch (bench-related)
               "epoch_passes": 3}


def parse_groups(groups) -> list:
    """'patient,volume' / ['patient', 'volume'] / 'none' -> sorted canonical list."""
    if groups is None:
        return list(DEFAULTS["groups"])
    if isinstance(groups, str):
        groups = [g for g in groups.replace("+", ",").split(",") if g.strip()]
    names = [g.strip().lower() for g in groups]
    if names in ([], ["none"]):
        return []
    bad = [g for g in names if g not in GROUP_KINDS]
    if bad:
        raise AlsegError(f"--groups: unknown group {bad[0]!r}; use any of patient, volume, slice, or none")
    return [g for g in GROUP_KINDS if g in names]


def group_sizes(patients, volumes, positions) -> Dict[str, float]:
    """G of eq. 4 for each grouping: slices of the pool / groups of that kind. The
    adjacent-slice groups overlap (one centred on each slice), so for them G is their
    average size: (3Z - 2) members summed over volumes / slices (Z for Z = 1)."""
    n = len(patients)
    _, counts = np.unique(volumes, return_counts=True)
    slice_members = sum(3 * z - 2 if z > 1 else 1 for z in counts)
    return {"patient": n / len(np.unique(patients)), "volume": n / len(counts),
            "slice": float(slice_members / n)}


def batch_labels(batch: Sequence[int], tuple_size: int, pat, vol, pos, groups) -> Dict[str, torch.Tensor]:
    """Per-row labels of a batch for each enabled grouping. Patient and volume labels are
    global ids; an adjacent-slice group is local to a tuple: a row shares its tuple
    leader's label when it is the leader or one of its neighbours, else it is alone."""
    b = np.asarray(batch)
    out = {"patient": torch.as_tensor(pat[b]), "volume": torch.as_tensor(vol[b])}
    if "slice" in groups:
        leader = b[(np.arange(len(b)) // tuple_size) * tuple_size]
        near = (vol[b] == vol[leader]) & (np.abs(pos[b] - pos[leader]) <= 1)
        lab = np.where(near, np.arange(len(b)) // tuple_size, len(b) + np.arange(len(b)))
        out["slice"] = torch.as_tensor(lab)
    return {k: v for k, v in out.items() if k in groups}


def _codes(values) -> np.ndarray:
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _positions(vol_codes, z) -> np.ndarray:
    pos = np.empty(len(z), dtype=np.int64)
    for v in np.unique(vol_codes):
        idx = np.flatnonzero(vol_codes == v)
        pos[idx[np.argsort(z[idx], kind="stable")]] = np.arange(idx.size)
    return pos


def pace(epoch: int, epochs: int, start: float, end: float, power: float = 0.5) -> float:
    """Peng's pace schedule gamma(e) = start + (end - start) * (e / E)^p, constant within an epoch."""
    return float(start + (end - start) * (epoch / max(1, epochs)) ** power)


def volume_phases(volume_names) -> Optional[np.ndarray]:
    """Cardiac phase per volume name (ED = 0 for the lowest frame number of its patient, ES = 1),
    from ACDC-style names ``<patient>_frameNN``; None when the names carry no frame number."""
    import re
    names = [str(v) for v in volume_names]
    found = [re.search(r"^(.*)_frame(\d+)$", v) for v in names]
    if not names or not all(found):
        return None
    lowest: Dict[str, int] = {}
    for f in found:
        lowest[f.group(1)] = min(lowest.get(f.group(1), 1 << 30), int(f.group(2)))
    return np.array([0 if int(f.group(2)) == lowest[f.group(1)] else 1 for f in found], dtype=np.int64)


def parse_meta(meta, phases_known: bool) -> list:
    """'position,patient,phase' -> canonical list; default: all three where the layout knows the
    phase, else position and patient."""
    if meta is None:
        return [m for m in META_KINDS if m != "phase" or phases_known]
    names = [m.strip().lower() for m in (meta.split(",") if isinstance(meta, str) else meta) if m.strip()]
    bad = [m for m in names if m not in META_KINDS]
    if bad or not names:
        raise AlsegError(f"--meta: unknown meta-label {bad[0]!r}; use any of {', '.join(META_KINDS)}"
                         if bad else "--meta: name at least one of position, patient, phase")
    if "phase" in names and not phases_known:
        raise AlsegError("--meta phase: this store's volume names carry no cardiac phase "
                         "(ACDC-style '<patient>_frameNN'); leave phase out")
    return [m for m in META_KINDS if m in names]


def load_pool(store: DatasetStore, split: Optional[str], size: int) -> torch.Tensor:
    idx = store.indices(None if split in (None, "all") else split)
    x = torch.from_numpy(store.images(idx))
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    return idx, x.contiguous()


def _plot_loss(history, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["loss"] for h in history], marker="o", label="total")
    for key in dict.fromkeys(("nt_xent", *GROUP_KINDS, *META_KINDS)):
        if history and key in history[0]["parts"]:
            ax.plot(epochs, [h["parts"][key] for h in history], lw=1, label=key)
    ax.set_xlabel("epoch"), ax.set_ylabel("mean loss"), ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _prepare_out(out: Path, force: bool, resume: bool) -> Optional[dict]:
    ckpt_path = out / "checkpoint.pt"
    if out.exists():
        if resume and ckpt_path.exists():
            return load_checkpoint(ckpt_path)
        elif force:   # with --resume too: nothing to resume, so start over
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        elif not out.is_dir() or any(out.iterdir()):
            what = "--force to start over" if resume else "--resume to continue its training or --force to start over"
            raise AlsegError(f"{out} already exists and holds no checkpoint to resume; pass {what}"
                             if resume else f"{out} already exists; pass {what}")
    out.mkdir(parents=True, exist_ok=True)
    return None


def pretrain_settings(store: DatasetStore, groups=None, weights: Optional[Sequence[float]] = None,
                      tau: Optional[float] = None, epochs: Optional[int] = None,
                      batch_size: Optional[int] = None, lr: Optional[float] = None,
                      weight_decay: Optional[float] = None, size: Optional[int] = None,
                      seed: Optional[int] = None, preset: Optional[str] = None, split: Optional[str] = None,
                      loss: str = "gcl", meta=None, lambdas: Optional[Dict[str, float]] = None,
                      gamma_start: Optional[float] = None, gamma_end: Optional[float] = None,
                      sp_mode: Optional[str] = None, partitions: Optional[int] = None,
                      scans_per_batch: Optional[int] = None, correct_grad: Optional[bool] = None,
                      epoch_passes: Optional[int] = None) -> Tuple[dict, int]:
    """The settings an encoder trains with (CONFIG_KEYS, defaults filled in and checked) and its
    epochs, without training: what ``pretrain`` uses, and what finds an encoder to reuse."""
    if preset is not None and preset not in PRESETS:
        raise AlsegError(f"--preset {preset!r}: choose one of {sorted(PRESETS)}")
    base = {**DEFAULTS, **PRESETS.get(preset, {})}
    if loss not in LOSSES:
        raise AlsegError(f"--loss {loss!r}: choose {', '.join(LOSSES)}")
    if loss == "sp-supcon":
        base = {**base, **SP_DEFAULTS, "groups": ()}
        if groups:
            raise AlsegError("--groups belongs to --loss gcl; SP-Con's labels are --meta")
    groups = parse_groups(groups if groups is not None else base["groups"])
    weights = list(default_weights(groups) if weights is None else weights)
    if loss == "sp-supcon":
        weights = [0.0, 0.0, 0.0, 0.0]
    elif len(weights) != 4 or any(w < 0 for w in weights) or not any(weights):
        raise AlsegError(f"--weights must be four non-negative numbers l0,l1,l2,l3 (not all 0); got {weights}")
    missing = [g for w, g in zip(weights[1:], GROUP_KINDS) if w and g not in groups]
    if missing:
        raise AlsegError(f"--weights gives the {missing[0]} loss a weight but --groups does not "
                         f"include {missing[0]}; add it to --groups or set its weight to 0")
    cfg = {"loss": loss, "groups": groups, "weights": weights,
           "tau": float(tau if tau is not None else base["tau"]),
           "size": int(size or base.get("size") or store.size),
           "batch_size": int(batch_size or default_batch_size(groups)),
           "lr": float(lr if lr is not None else base["lr"]),
           "weight_decay": float(weight_decay if weight_decay is not None else base["weight_decay"]),
           "seed": int(seed if seed is not None else base["seed"]),
           "split": split if split is not None else base["split"]}
    cfg["proj_dim"] = SP_DEFAULTS["proj_dim"] if loss == "sp-supcon" else 64
    phases = volume_phases(store.volumes)   # per slice (the names are per slice)
    if loss == "sp-supcon":
        given = {"lambdas": lambdas, "gamma_start": gamma_start, "gamma_end": gamma_end, "sp_mode": sp_mode,
                 "partitions": partitions, "scans_per_batch": scans_per_batch, "correct_grad": correct_grad,
                 "epoch_passes": epoch_passes}
        cfg.update({k: (v if v is not None else base[k]) for k, v in given.items()})
        cfg["meta"] = parse_meta(meta, phases is not None)
        cfg["lambdas"] = {m: float({**SP_DEFAULTS["lambdas"], **cfg["lambdas"]}.get(m, 0.0)) for m in cfg["meta"]}
        cfg["batch_size"] = int(cfg["scans_per_batch"]) * int(cfg["partitions"])
        if cfg["sp_mode"] not in SP_MODES:
            raise AlsegError(f"--sp-mode {cfg['sp_mode']!r}: choose {', '.join(SP_MODES)}")
        if int(cfg["partitions"]) < 1 or int(cfg["scans_per_batch"]) < 2 or int(cfg["epoch_passes"]) < 1 \
                or not cfg["gamma_start"] > 0 \
                or cfg["gamma_end"] < cfg["gamma_start"] or any(v < 0 for v in cfg["lambdas"].values()) \
                or not any(cfg["lambdas"].values()):
            raise AlsegError("SP-Con: --partitions >= 1, --scans-per-batch >= 2, epoch_passes >= 1, 0 < gamma start <= end, "
                             "and non-negative --lambdas that are not all 0")
    elif meta is not None:
        raise AlsegError("--meta belongs to --loss sp-supcon")
    epochs = int(epochs if epochs is not None else base["epochs"])
    if epochs < 1 or cfg["batch_size"] < 1 or cfg["tau"] <= 0 or cfg["size"] < 8:
        raise AlsegError("--epochs and --batch-size must be >= 1, --tau > 0 and --size >= 8")
    return cfg, epochs


def pretrain(dataset, out, groups=None, weights: Optional[Sequence[float]] = None,
             tau: Optional[float] = None, epochs: Optional[int] = None,
             batch_size: Optional[int] = None, lr: Optional[float] = None,
             weight_decay: Optional[float] = None, size: Optional[int] = None,
             seed: Optional[int] = None, device: str = "auto", workers: int = 0,
             resume: bool = False, force: bool = False, preset: Optional[str] = None,
             split: Optional[str] = None, progress=True, loss: str = "gcl", meta=None,
             lambdas: Optional[Dict[str, float]] = None, gamma_start: Optional[float] = None,
             gamma_end: Optional[float] = None, sp_mode: Optional[str] = None,
             partitions: Optional[int] = None, scans_per_batch: Optional[int] = None,
             correct_grad: Optional[bool] = None, epoch_passes: Optional[int] = None) -> dict:
    """Train the encoder; returns the encoder manifest (also saved in ``out``).

    loss "gcl": eq. 5 with ``groups`` / ``weights``. loss "sp-supcon": Peng's objective with
    ``meta`` (position, patient, phase), ``lambdas`` per meta-label, the pace
    ``gamma_start`` -> ``gamma_end`` with ``sp_mode`` linear | hard weights, ``partitions`` (S),
    ``scans_per_batch`` (m) and ``correct_grad``; each epoch draws ``epoch_passes`` (3) times the
    pool's slice count, what a GCL patient+volume epoch shows, so the epochs cost the same.

    progress: a Reporter (the CLI's bar), True for one plain stderr line per epoch, False for none.
    """
    store = DatasetStore(dataset)
    cfg, epochs = pretrain_settings(
        store, groups=groups, weights=weights, tau=tau, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, size=size, seed=seed, preset=preset, split=split, loss=loss, meta=meta,
        lambdas=lambdas, gamma_start=gamma_start, gamma_end=gamma_end, sp_mode=sp_mode, partitions=partitions,
        scans_per_batch=scans_per_batch, correct_grad=correct_grad, epoch_passes=epoch_passes)
    groups, weights = cfg["groups"], cfg["weights"]
    phases = volume_phases(store.volumes) if loss == "sp-supcon" else None
    dev = resolve_device(device)
    if workers and dev.type == "cpu":
        torch.set_num_threads(int(workers))
    threads = torch.get_num_threads() if dev.type == "cpu" else None
    out = Path(out)
    ckpt = _prepare_out(out, force, resume)
    if ckpt is not None:
        old = {k: ckpt["config"].get(k, "gcl" if k == "loss" else None) for k in CONFIG_KEYS}
        if old != {k: cfg.get(k) for k in CONFIG_KEYS}:
            diff = [k for k in CONFIG_KEYS if old[k] != cfg.get(k)]
            raise AlsegError(f"{out}/checkpoint.pt was trained with other settings ({diff[0]}="
                             f"{old[diff[0]]!r}); resume with the same options or pass --force")

    idx, images = load_pool(store, cfg["split"], cfg["size"])
    pat, vol, z = _codes(store.patients[idx]), _codes(store.volumes[idx]), store.z[idx]
    pos = _positions(vol, z)
    G = group_sizes(pat, vol, pos)
    if loss == "sp-supcon":
        lengths = np.bincount(vol)[vol]
        metas = {"position": position_partition(pos, lengths, int(cfg["partitions"])), "patient": pat,
                 "phase": None if phases is None else phases[idx]}
        per_epoch = -(-len(idx) * int(cfg["epoch_passes"]) // cfg["batch_size"])
    seed_everything(cfg["seed"])
    proj_dim = cfg["proj_dim"]
    model = GCLEncoder("resnet18", in_channels=images.shape[1], proj_dim=proj_dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history, start = [], 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        history, start = ckpt["history"], int(ckpt["epoch"])
    config = {"arch": "resnet18", "in_channels": int(images.shape[1]), "proj_dim": proj_dim, **cfg, "G": G}
    tsize = 1 + len(groups)
    images = images.to(dev)
    t_start, seen, ckpt_s = time.perf_counter(), 0, 0.0   # ckpt_s: writing checkpoints, not training

    reporter = as_reporter(progress)
    for epoch in range(start, epochs):
        epoch_seed = cfg["seed"] * 1_000_003 + epoch
        if loss == "sp-supcon":
            batches = partition_batches(vol, metas["position"], cfg["scans_per_batch"], epoch_seed, per_epoch)
            gamma = pace(epoch, epochs, cfg["gamma_start"], cfg["gamma_end"])
        else:
            batches = group_batches(pat, vol, z, groups, cfg["batch_size"], seed=epoch_seed)
        gen = torch_generator(cfg["seed"] * 1_000_003 + epoch + 7919)
        task = f"pretrain epoch {epoch + 1}/{epochs}"
        reporter.start(task, len(batches))
        model.train()
        totals, parts_sum, n_batches = 0.0, {}, 0
        for batch in batches:
            x = images[torch.as_tensor(batch, device=dev)]
            views = torch.cat([augment(x, gen), augment(x, gen)])
            labels = {k: v.to(dev) for k, v in batch_labels(batch, tsize, pat, vol, pos, groups).items()}
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                zproj = model(views)
            if loss == "sp-supcon":
                value, parts = sp_total_loss(
                    zproj.float(), {m: torch.as_tensor(metas[m][batch], device=dev) for m in cfg["meta"]},
                    cfg["lambdas"], cfg["tau"], gamma, cfg["sp_mode"], cfg["correct_grad"])
            else:
                value, parts = gcl_total_loss(zproj.float(), cfg["tau"], weights, groups=labels,
                                              patients=torch.as_tensor(pat[batch], device=dev),
                                              G=G, return_parts=True)
            if not torch.isfinite(value):   # stop before a NaN reaches the weights
                raise AlsegError(f"loss became {float(value)} at epoch {epoch + 1}; lower --lr or raise --tau")
            opt.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(opt)
            scaler.update()
            totals += float(value.detach())
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
            n_batches += 1
            seen += len(batch)
            rate = seen / max(1e-9, time.perf_counter() - t_start - ckpt_s)
            reporter.update(task, n_batches, f"loss {totals / n_batches:.4f}  {rate:.1f} slices/s")
        reporter.finish(task)
        # CPU threads set float summation order: recorded per epoch, as a resumed run may differ
        history.append({"epoch": epoch + 1, "loss": totals / n_batches, "threads": threads,
                        "parts": {k: v / n_batches for k, v in parts_sum.items()},
                        **({"gamma": gamma} if loss == "sp-supcon" else {})})
        reporter.note(f"pretrain epoch {epoch + 1}/{epochs} loss {totals / n_batches:.4f} "
                      f"{seen / max(1e-9, time.perf_counter() - t_start - ckpt_s):.1f} slices/s")
        t_ckpt = time.perf_counter()
        with atomic_path(out / "checkpoint.pt", force=True) as tmp:
            torch.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scaler": scaler.state_dict(), "history": history, "config": config,
                        "rng": torch.get_rng_state()}, tmp)
        ckpt_s += time.perf_counter() - t_ckpt
    # the training rate leaves out the checkpoint writes (~130 MB each: weights and Adam state),
    # reported on their own (0.1-0.3 s each here; a benchmark of a few seconds would feel them)
    rate = seen / (time.perf_counter() - t_start - ckpt_s) if seen else None

    with atomic_path(out / "encoder.pt", force=True) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    write_json(out / "config.json", config)
    write_json(out / "loss.json", {"history": history, "slices_per_s": rate})
    _plot_loss(history, out / "loss.png")
    manifest = make_manifest(
        "encoder", args={**cfg, "epochs": epochs, "preset": preset, "device": device, "workers": workers,
                         "resume": resume, "threads": threads},
        inputs={"dataset": store.path}, seed=cfg["seed"], device=str(dev),
        outputs={"encoder": out, "weights": out / "encoder.pt", "config": out / "config.json",
                 "loss": out / "loss.json", "plot": out / "loss.png"},
        config=config, final_loss=history[-1]["loss"] if history else None,
        epochs_done=len(history), slices_per_s=rate, checkpoint_seconds=round(ckpt_s, 3),
        pool_slices=int(len(idx)))
    save_manifest(out / "manifest.json", manifest)
    return manifest
