"""`train-seg`: train UNet / DMPLS / ResNet-50 UNet members on a labelled set of slices.

Optimisation follows method.md section 5: SGD (momentum 0.9, wd 1e-4), lr 0.01 with poly
decay 0.9, batch 6, iterations = max(floor, 60000 x labelled fraction of the train pool),
validation Dice every ``val_every`` iterations, best checkpoint kept. Randomness: the
global torch generator is seeded per member (layer init and dropout), batches, augmentation
and DMPLS's beta come from an explicit generator, so a seed gives the same weights on CPU.
The run is written into ``.NAME.partial`` beside MODEL_DIR and renamed when complete;
``resume`` continues a killed run from each member's last.pt.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..atomic import atomic_path, check_writable, replace_json
from ..progress import as_reporter
from ..device import load_checkpoint, resolve_device, torch_generator
from ..errors import AlsegError
from ..manifest import load_manifest, make_manifest, save_manifest
from ..store import DatasetStore
from .augment import augment_batch
from .checkpoint import MemberState, finished, timer
from .labels import check_compatible, labelled_with, resolve_labels, validation_slices
from .losses import dmpls_loss, full_loss, partial_ce
from .nets import NETWORKS, build_network, check_network
from .recipe import BatchSampler, ce_weights, check_recipe, lr_at, make_optimizer, resolve_recipe
from .validate import validation_scores

PAPER_ITERATIONS = 60000


def default_iterations(n_labeled: int, n_pool: int, floor: int) -> int:
    return max(int(floor), int(PAPER_ITERATIONS * n_labeled / max(1, n_pool)))


def train_seg(dataset, labels, out, model: str = "unet", supervision: str = None, iterations: int = None,
              min_iterations: int = 500, batch_size: int = 6, lr: Optional[float] = None, size: int = None,
              seed: int = 0, device: str = "auto", val_every: int = 200, workers: int = 0,
              resume: bool = False, force: bool = False, ensemble: int = 1, base_channels: int = 16,
              backbone_weights=None, train_split: str = "train", val_split: str = "val",
              allow_other_dataset: bool = False, only_members=None, progress=True,
              optimizer: Optional[str] = None, warmup: int = 0, sampler: str = "uniform",
              class_weights: str = "none", augment: str = "paper", retries: int = 0,
              min_val_dice: Optional[float] = None, clip_grad: Optional[float] = None,
              pseudo=None, pseudo_weight: float = 0.1, semi: Optional[str] = None,
              semi_options: Optional[Dict] = None, init=None, pseudo_share: Optional[float] = None) -> Dict:
    """Train ``ensemble`` members (seeds seed..seed+M-1) on the labelled slices; the best on
    validation is the model's. ``only_members``: train just those members into the partial
    state (for members trained in parallel) and return their records; a later call with
    ``resume`` finds them done and assembles the model.

    Recipe (recipe.py; the defaults are the paper's, or the network's own where it has one:
    Adam 1e-4 with gradient clipping for unet-resnet50): ``optimizer`` sgd | adam | adamw,
    ``lr``, ``clip_grad`` (max gradient norm, 0 = off), ``warmup``
    iterations of linear warm-up, ``sampler`` uniform | foreground, ``class_weights`` none |
    balanced, ``augment`` paper | none. ``retries``: a member whose best checkpoint is
    degenerate (a foreground class of the validation masks predicted nowhere, or best val Dice
    under ``min_val_dice``) is trained again from seed + RETRY_STRIDE * attempt, up to
    ``retries`` times; every attempt is recorded in the member's record.

    ``pseudo``: a pseudo-labels store (k-NN propagation) whose slices train beside the labelled
    ones, batches drawn uniformly from both, loss (sum over labelled rows + ``pseudo_weight`` x
    sum over pseudo rows) / batch (Belharbi et al. eq. 1); weight 0 trains on the labels alone.
    ``pseudo_share`` s: instead, every batch holds round(s x batch) pseudo rows and the rest
    labelled (at least one), so the labelled slices keep their share of a fixed iteration budget
    however many pseudo slices join (uniform draws starve them: 33 labelled beside 293 pseudo
    are a tenth of each batch).
    ``semi`` "arco": ARCO's mean teacher and pixel contrast on the pool's unlabelled slices
    (semi.py; ``semi_options``), full masks only. ``init``: a finished model directory of the
    same network whose weights start every member (member m from its member m, or from its best
    member where it has fewer): a warm start, e.g. from the previous AL round's model; the
    optimiser, schedule and seeds are a fresh run's."""
    # ---- every check before any training starts -------------------------------------------
    store = DatasetStore(dataset)
    NETWORKS.get(model)
    info = NETWORKS.info(model)
    supervision = supervision or info["supervision"]
    if supervision not in ("full", "scribble"):
        raise AlsegError(f"--supervision {supervision!r}: choose 'full' or 'scribble'")
    no_labels = "no labels yet: import annotations with `alseg import-labels` (or prep with --masks / --scribbles)"
    if supervision == "scribble" and not store.has_scribbles:
        raise AlsegError(f"{store.path} has no scribbles; " + ("it has masks: train with --supervision full"
                                                                if store.has_masks else no_labels))
    if supervision == "scribble" and store.unannotated is None:
        raise AlsegError(f"{store.path}: no 'unannotated' value in the store attrs; cannot train on scribbles")
    if supervision == "full" and not store.has_masks:
        raise AlsegError(f"{store.path} has no masks; " + ("it has scribbles only: train with --model dmpls "
                                                            "--supervision scribble" if store.has_scribbles else no_labels))
    check_network(model, supervision, backbone_weights)
    if size is not None and int(size) != store.size:
        raise AlsegError(f"--size {size}: {store.path} holds slices at {store.size} px; re-prep with --size {size}")
    if store.num_classes < 2:
        raise AlsegError(f"{store.path}: num_classes is {store.num_classes}; segmentation needs at least 2: "
                         f"declare the classes at prep, e.g. --classes background,RV,MYO,LV")
    no_val = val_split == "none"      # nothing annotated to validate on: the last checkpoint is the model
    if not store.has_masks and not no_val:
        raise AlsegError(f"{store.path} has no masks for validation Dice; pass --val-split none (the last "
                         f"checkpoint is kept) or import masks for some validation slices")
    for name, value in (("--batch-size", batch_size), ("--ensemble", ensemble), ("--val-every", val_every),
                        ("--base-channels", base_channels)):
        if int(value) < 1:
            raise AlsegError(f"{name} {value}: must be at least 1")
    if iterations is not None and int(iterations) < 1:
        raise AlsegError(f"--iterations {iterations}: must be at least 1")
    chosen = resolve_recipe(info.get("recipe"), optimizer=optimizer, lr=lr, clip_grad=clip_grad)
    optimizer, lr, clip_grad = chosen["optimizer"], float(chosen["lr"]), float(chosen["clip_grad"])
    if clip_grad < 0:
        raise AlsegError(f"--clip-grad {clip_grad:g}: must be >= 0 (0 = no clipping)")
    check_recipe(optimizer, sampler, class_weights, augment, warmup, retries)
    lab_idx = labelled_with(resolve_labels(labels, store, train_split, allow_other_dataset), store,
                            "scribbles" if supervision == "scribble" else "masks", labels)
    pseudo_idx, pseudo_masks = _pseudo_set(pseudo, float(pseudo_weight), store, lab_idx, info)
    if pseudo_share is not None and (isinstance(pseudo_share, bool) or not isinstance(pseudo_share, (int, float))
                                     or not 0 <= pseudo_share < 1):
        raise AlsegError(f"pseudo share {pseudo_share!r}: a fraction of each batch in [0, 1)")
    semi_cfg = None
    if semi is not None:
        from .semi import resolve_semi
        semi_cfg = resolve_semi(semi, semi_options, supervision, model)
    if no_val and (retries or min_val_dice is not None or info.get("volumetric")):
        raise AlsegError("--val-split none keeps the last checkpoint: it cannot go with --retries, "
                         "--min-val-dice or a 3D network (they need validation)")
    val_idx = np.zeros(0, dtype=np.int64) if no_val else validation_slices(store, val_split)
    n_pool = int((store.split == train_split).sum())
    iterations = int(iterations) if iterations else default_iterations(len(lab_idx), n_pool, min_iterations)
    dev = resolve_device(device)
    if workers and dev.type == "cpu":   # the thread count changes float rounding, so the model: recorded
        torch.set_num_threads(int(workers))

    final = Path(out)
    work = final.with_name(f".{final.name}.partial")
    config = {"model": model, "supervision": supervision, "in_channels": store.channels,
              "num_classes": store.num_classes, "size": store.size, "base_channels": int(base_channels),
              "unannotated": store.unannotated, "classes": store.attrs.get("classes"),
              # what prep did, so `alseg predict` can do the same to files never prepped
              "preprocessing": store.attrs.get("preprocessing")}
    if info.get("volumetric"):
        config["network_options"] = {"inplane_levels": _inplane_levels(store, lab_idx)}
    # a 3D network's pooling follows the labelled volumes' spacing: a warm start keeps the init's
    adopt = ("network_options",) if info.get("volumetric") else ()
    init_states = _init_states(init, config, int(ensemble), adopt=adopt)
    recipe = {"optimizer": optimizer, "clip_grad": clip_grad, "warmup": int(warmup), "sampler": sampler, "class_weights": class_weights,
              "augment": augment, "retries": int(retries), "min_val_dice": min_val_dice}
    args = {"model": model, "supervision": supervision, "iterations": iterations, "batch_size": batch_size,
            "lr": lr, "seed": seed, "device": str(dev), "val_every": val_every, "ensemble": ensemble,
            "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "base_channels": base_channels, "train_split": train_split, "val_split": val_split,
            "backbone_weights": str(backbone_weights) if backbone_weights else None,
            "allow_other_dataset": bool(allow_other_dataset),
            "labeled_count": int(len(lab_idx)), "pool_size": n_pool, **recipe,
            **({"pseudo": str(pseudo), "pseudo_weight": float(pseudo_weight), "pseudo_count": int(pseudo_idx.size),
                "pseudo_share": pseudo_share} if pseudo is not None else {}), **({"semi": semi_cfg} if semi_cfg else {}),
            **({"init": str(init)} if init is not None else {})}
    if resume and final.exists() and (final / "manifest.json").exists():
        done = load_manifest(final / "manifest.json", expect=["model"])
        check_compatible(done, store, final)
        if done.get("args", {}).get("iterations") == iterations and len(done.get("members", [])) == ensemble:
            return done  # nothing left to do
        raise AlsegError(f"{final} is a finished model with other settings; pass --force to retrain it")
    if not resume:
        check_writable(final, force)
        if work.exists() and not force:
            raise AlsegError(f"{work} holds the partial state of an interrupted run; pass --resume to "
                             f"continue it, or --force to discard it and start over")
        if work.exists():
            shutil.rmtree(work)
    if (work / "config.json").exists():   # (a member trained beside this one may have made work/ only)
        old = json.loads((work / "config.json").read_text())
        check_compatible(old, store, work)
        if old.get("model") != model:
            raise AlsegError(f"--resume: {work} was a {old.get('model')} run, not {model}")
    work.mkdir(parents=True, exist_ok=True)
    replace_json(work / "config.json", config)        # members trained in parallel write it alike

    # ---- data in memory: the labelled slices are few, the store may be large --------------
    member_fn = None
    if info.get("volumetric"):          # whole volumes for a 3D network (train3d.py)
        from .train3d import train_member_3d
        member_fn, targets, fill = train_member_3d, None, 0
        images = [_volume(store, v) for v in whole_volumes(store, lab_idx, "--labels")]
        val = [_volume(store, v) for v in whole_volumes(store, val_idx, f"the {val_split!r} split")]
    else:
        images = torch.from_numpy(store.images(lab_idx))
        targets = torch.from_numpy((store.scribbles if supervision == "scribble" else store.masks)(lab_idx))
        val = None if no_val else (torch.from_numpy(store.images(val_idx)), store.masks(val_idx),
                                   store.volumes[val_idx])
        fill = int(store.unannotated) if supervision == "scribble" else 0
    extra = {}
    if pseudo_idx.size:      # pseudo rows after the labelled ones; their flags travel with them
        extra["pseudo"] = (torch.arange(images.shape[0] + pseudo_idx.size) >= images.shape[0], float(pseudo_weight),
                           None if pseudo_share is None else float(pseudo_share))
        images = torch.cat([images, torch.from_numpy(store.images(pseudo_idx))])
        targets = torch.cat([targets, torch.from_numpy(pseudo_masks).to(targets.dtype)])
    if semi_cfg:
        pool = np.setdiff1d(store.indices(train_split), lab_idx)
        extra["semi"] = (semi_cfg, torch.from_numpy(store.images(pool)))

    reporter = as_reporter(progress)
    members, t0 = [], time.time()
    for m in range(int(ensemble)):
        if only_members is not None and m not in only_members:
            continue
        members.append(_train_with_retries(work, m, config, recipe, images, targets, val, fill, int(seed) + m,
                                           iterations, int(batch_size), float(lr), int(val_every), dev,
                                           backbone_weights, reporter, f"member {m + 1}/{ensemble}", member_fn,
                                           **extra, **({"init_state": init_states[m]} if init_states else {})))
    if only_members is not None:
        return {"kind": "members", "members": members}
    # the best member on validation, a non-degenerate one where there is one
    best = max(range(len(members)), key=lambda i: (members[i].get("degenerate") is None,
                                                   members[i]["best_val_dice"] or -1.0))
    manifest = make_manifest(
        "model", args, inputs={"dataset": store.path, **({"labels": labels} if _is_file(labels) else {})},
        outputs={"model_dir": final}, seed=seed, device=str(dev),
        model=model, num_classes=store.num_classes, size=store.size, in_channels=store.channels,
        best_member=best, members=members, labeled=store.slice_ids[lab_idx].tolist(),
        validation="none: the last checkpoint is the model" if no_val else f"best on the {val_split!r} split",
        degenerate=members[best].get("degenerate"),
        train_seconds=round(time.time() - t0, 3))
    save_manifest(work / "manifest.json", manifest)
    with atomic_path(final, force=True) as tmp:
        os.replace(work, tmp)
    return manifest


NETWORK_KEYS = ("model", "in_channels", "num_classes", "size", "base_channels", "network_options")


def _init_states(init, config: Dict, ensemble: int, adopt=()):
    """The weights that start each member (``init``'s best checkpoints), or None; the ``adopt``
    keys of the network config are taken from ``init``."""
    if init is None:
        return None
    from .predict import read_model_dir
    manifest, old = read_model_dir(init)
    for key in adopt:
        config[key] = old.get(key)
    for key in NETWORK_KEYS:
        if old.get(key) != config.get(key):
            raise AlsegError(f"--init {init}: its {key} is {old.get(key)!r}, this run's {config.get(key)!r}; "
                             "a warm start needs the same network")
    members = manifest["members"]
    paths = [Path(init) / members[m if m < len(members) else manifest["best_member"]]["dir"] / "best.pt"
             for m in range(ensemble)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise AlsegError(f"--init: {missing[0]} is missing; retrain that model")
    return [load_checkpoint(p, map_location="cpu")["state_dict"] for p in paths]


def whole_volumes(store: DatasetStore, idx: np.ndarray, what: str):
    """The volumes of ``idx``, each of which must be there whole (a 3D network trains on and
    validates with whole volumes)."""
    names = list(dict.fromkeys(store.volumes[idx].tolist()))
    have = set(int(i) for i in idx)
    partial = [v for v in names if not set(int(i) for i in store.volume_slices(v)) <= have]
    if partial:
        raise AlsegError(f"{what}: {len(partial)} volume(s) are only partly there (e.g. {partial[0]}); a 3D "
                         f"network trains on whole volumes: select with --unit volume")
    return names


def _volume(store: DatasetStore, name: str):
    order = store.volume_slices(name)
    return (torch.from_numpy(store.images(order)).permute(1, 0, 2, 3).contiguous(),
            torch.from_numpy(store.masks(order)))


def _inplane_levels(store: DatasetStore, idx: np.ndarray) -> int:
    """nnU-Net's anisotropic pooling from the labelled volumes' median spacing at the working size."""
    from .nets import inplane_levels

    def xy(vi):     # in-plane mm per working pixel: through resampling and crop when prep did them
        geom = vi.get("geometry")
        if geom:
            return (geom.get("target_spacing") or vi["spacing"][1]) * geom["size"][0] / store.size
        return vi["spacing"][1] * vi["shape"][1] / store.size
    info = {v["name"]: v for v in store.volume_info}
    sp = [(info[v]["spacing"][0], xy(info[v])) for v in set(store.volumes[idx].tolist()) if info[v].get("spacing")]
    if not sp:
        return 0
    z, xy = np.median(np.asarray(sp), axis=0)
    return inplane_levels(float(z), float(xy))


def _is_file(labels) -> bool:
    return isinstance(labels, (str, os.PathLike)) and str(labels) != "all" and Path(str(labels)).is_file()


RETRY_STRIDE = 100_003     # retry seeds: far from the next members' (seed + m) and rounds' seeds


def _train_with_retries(work: Path, m: int, config, recipe, images, targets, val, fill, seed, iterations,
                        batch_size, lr, val_every, dev, backbone_weights, reporter, label,
                        member_fn=None, **extra) -> Dict:
    """Member m, trained again from another seed while its best checkpoint is degenerate
    (``member_fn``: ``_train_member``, or train3d's for a 3D network)."""
    attempts = []
    for attempt in range(recipe["retries"] + 1):
        name = f"member{m}" if attempt == 0 else f"member{m}.retry{attempt}"
        rec = (member_fn or _train_member)(work / name, config, recipe, images, targets, val, fill,
                            seed + RETRY_STRIDE * attempt, iterations, batch_size, lr, val_every, dev,
                            backbone_weights, reporter, label if attempt == 0 else f"{label} retry {attempt}",
                            **extra)
        floor = recipe.get("min_val_dice")
        if rec.get("degenerate") is None and floor is not None and rec["best_val_dice"] < floor:
            rec = {**rec, "degenerate": f"best val Dice {rec['best_val_dice']:.3f} under the floor {floor:.3f}"}
        attempts.append({"seed": rec["seed"], "dir": rec["dir"], "best_val_dice": rec["best_val_dice"],
                         "degenerate": rec.get("degenerate")})
        if rec.get("degenerate") is None:
            break
        reporter.note(f"{label}: seed {rec['seed']} is degenerate ({rec['degenerate']})"
                      + ("; retrying from another seed" if attempt < recipe["retries"] else ""))
    if len(attempts) > 1:
        # the kept attempt: the first healthy one, else the best on validation
        healthy = [a for a in attempts if a["degenerate"] is None]
        keep = healthy[0] if healthy else max(attempts, key=lambda a: a["best_val_dice"])
        rec = json.loads((work / keep["dir"] / "done.json").read_text())
        if keep["degenerate"] and not rec.get("degenerate"):
            rec["degenerate"] = keep["degenerate"]
        rec["attempts"] = attempts
    return rec


def mixed_sampler(kind: str, targets: torch.Tensor, foreground, pseudo=None):
    """The batch sampler: over every row (uniform over L u P, Belharbi's), or with a pseudo
    share s (``pseudo[2]``), round(s x B) rows drawn from the pseudo rows (after the labelled
    ones) and the rest by ``kind`` from the labelled rows."""
    share = pseudo[2] if pseudo is not None else None
    if share is None:
        return BatchSampler(kind, targets, foreground)
    n_lab = int((~pseudo[0]).sum())
    n_p = targets.shape[0] - n_lab
    labelled = BatchSampler(kind, targets[:n_lab], foreground)

    def sample(batch_size: int, gen: torch.Generator) -> torch.Tensor:    # (pseudo rows exist: n_p > 0)
        k = min(batch_size - 1, int(round(share * batch_size)))
        return torch.cat([labelled(batch_size - k, gen), n_lab + torch.randint(0, n_p, (k,), generator=gen)])
    return sample


def pseudo_batch_loss(supervised, logits: torch.Tensor, y: torch.Tensor, is_pseudo: torch.Tensor,
                      weight: float, fill: int, class_weights=None) -> torch.Tensor:
    """(|L_b| x supervised loss on the batch's labelled rows + weight x |P_b| x (CE + Dice) on its
    pseudo rows) / B: an unbiased estimate of Belharbi et al.'s eq. 1 for uniform draws from L u P.
    Augmentation fills pseudo rows with ``fill`` where it fills scribbles: those pixels are background."""
    b = y.shape[0]
    n_p = int(is_pseudo.sum())
    loss = logits.new_zeros(())
    if n_p < b:
        loss = loss + (b - n_p) / b * supervised(~is_pseudo)
    target = y[is_pseudo].masked_fill(y[is_pseudo] == fill, 0) if fill else y[is_pseudo]
    return loss + weight * n_p / b * full_loss(logits[is_pseudo], target, class_weights)


def _pseudo_set(pseudo, weight: float, store: DatasetStore, lab_idx: np.ndarray, info):
    """The pseudo-labelled slices (dataset indices) and their masks; none with weight 0."""
    empty = (np.zeros(0, dtype=np.int64), None)
    if pseudo is None:
        return empty
    if not weight >= 0:
        raise AlsegError(f"--pseudo-weight {weight}: must be >= 0")
    if info.get("volumetric"):
        raise AlsegError("--pseudo: a 3D network trains on whole labelled volumes; pseudo-masks are slices")
    from ..store import PseudoStore
    path = Path(pseudo)
    ps = PseudoStore(path / "pseudo.zarr" if (path / "pseudo.zarr").exists() else path)
    at = {s: i for i, s in enumerate(store.slice_ids.tolist())}
    unknown = [s for s in ps.slice_ids if s not in at]
    if unknown:
        raise AlsegError(f"--pseudo {pseudo}: slice {unknown[0]} is not in {store.path}")
    idx = np.array([at[s] for s in ps.slice_ids], dtype=np.int64)
    if np.isin(idx, lab_idx).any():
        raise AlsegError(f"--pseudo {pseudo}: pseudo-labels for slices that are labelled "
                         f"(e.g. {store.slice_ids[idx[np.isin(idx, lab_idx)][0]]})")
    masks = ps.masks()
    if masks.shape[1:] != (store.size, store.size) or (idx.size and int(masks.max()) >= store.num_classes):
        raise AlsegError(f"--pseudo {pseudo}: masks do not fit {store.path} ({masks.shape[1:]} px, "
                         f"{store.num_classes} classes)")
    return (idx, masks) if weight > 0 else empty


def _train_member(mdir: Path, config, recipe, images, targets, val, fill, seed, iterations, batch_size, lr,
                  val_every, dev, backbone_weights, reporter, label, pseudo=None, semi=None,
                  init_state=None) -> Dict:
    done = finished(mdir)
    if done is not None:
        return done
    mdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # layer init and dropout draw from the global generator
    net = build_network(config["model"], config["in_channels"], config["num_classes"],
                        config["base_channels"], backbone_weights).to(dev)
    if init_state is not None:          # a warm start: the init above still ran, so dropout draws match
        net.load_state_dict(init_state)
    # channels-last where the network prefers it: 15-30 % more it/s on CPU (bench-train)
    fmt = torch.channels_last if getattr(net, "prefers_channels_last", False) else torch.contiguous_format
    net = net.to(memory_format=fmt)
    arco = None
    if semi is not None:
        from .semi import Arco
        arco = Arco(net, semi[0], semi[1], config["num_classes"], config["base_channels"]).to(dev)
    opt = make_optimizer(recipe["optimizer"], list(net.parameters()) + (list(arco.trainable()) if arco else []), lr)
    gen = torch_generator(seed)
    sample = mixed_sampler(recipe["sampler"], targets, list(range(1, config["num_classes"])), pseudo)
    weights = ce_weights(recipe["class_weights"], targets, config["num_classes"],
                            ignore=config["unannotated"] if config["model"] == "dmpls" else None)
    state = MemberState.resume(mdir, net, opt, gen, dev, extra=arco)
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    dmpls = config["model"] == "dmpls"
    losses = []
    reporter.start(label, iterations, state.it)
    start = timer(state)
    try:
        while state.it < iterations:
            it = state.it
            net.train()
            pick = sample(batch_size, gen)
            x, y = images[pick], targets[pick]
            if recipe["augment"] == "paper":
                x, y = augment_batch(x, y, gen, fill=fill)
            beta = float(torch.rand(1, generator=gen))
            x, y = x.to(dev).contiguous(memory_format=fmt), y.to(dev).long()
            for group in opt.param_groups:
                group["lr"] = lr_at(it, iterations, lr, recipe["warmup"])
            is_p = pseudo[0][pick].to(dev) if pseudo is not None else None
            with torch.autocast(dev.type, enabled=amp):
                if dmpls:
                    out1, out2 = net.forward_both(x)
                    logits = out1
                    supervised = lambda r: dmpls_loss(out1[r].float(), out2[r].float(), y[r], config["unannotated"],
                                                      beta, weights)
                else:
                    logits, feats = net.forward_features(x) if arco is not None else (net(x), None)
                    if config["supervision"] == "scribble":     # a one-head net on scribbles: pCE only
                        supervised = lambda r: partial_ce(logits[r].float(), y[r], config["unannotated"], weights)
                    else:
                        supervised = lambda r: full_loss(logits[r].float(), y[r], weights)
                if is_p is None or not is_p.any():
                    loss = supervised(slice(None))
                else:
                    loss = pseudo_batch_loss(supervised, logits.float(), y, is_p, pseudo[1], fill, weights)
                if arco is not None:
                    arco.head.train()
                    loss = loss + arco.loss(net, x, y, feats, it, iterations, gen)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe["clip_grad"]:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), recipe["clip_grad"])
            scaler.step(opt)
            scaler.update()
            if arco is not None:
                arco.update_teacher(net)
            state.it = it = it + 1
            losses.append(float(loss.detach()))
            if it % val_every == 0 or it == iterations:
                t_val = time.time()
                vd, why = validation_scores(net, *val, config["num_classes"], dev) if val is not None else (None, None)
                state.val_seconds += time.time() - t_val
                elapsed = time.time() - start
                state.validated(net, opt, gen, config, vd, why, losses, elapsed, extra=arco)
                losses = []
                scored = f"val Dice {vd:.3f} (best {state.best:.3f})" if vd is not None else "no validation"
                reporter.note(f"{label} it {it}/{iterations} loss {state.curve[-1]['loss']:.4f} {scored} "
                              f"{it / max(1e-9, elapsed):.2f} it/s")
            rate = it / max(1e-9, time.time() - start)
            vd_txt = f"{state.curve[-1]['val_dice']:.3f}" if state.curve and state.curve[-1]["val_dice"] is not None else "-"
            reporter.update(label, it, f"loss {losses[-1] if losses else state.curve[-1]['loss']:.3f} "
                                       f"val {vd_txt} {rate:.1f} it/s")
    finally:
        reporter.finish(label)
    return state.finish(config, seed, time.time() - start, channels_last=fmt is torch.channels_last)

