"""Prediction API for acquisition and evaluation: softmax, MC-dropout and ensemble outputs.

All modes run on the stored, un-augmented images, so passes and members are aligned
pixel for pixel. MC dropout switches on exactly the ``nn.Dropout`` modules and keeps
batch-norm in eval mode (the reference code's train-mode BN is a known pitfall).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..device import like_weights, load_checkpoint, resolve_device
from ..errors import AlsegError
from ..manifest import load_manifest
from ..store import DatasetStore
from .labels import check_compatible
from .mc import inference_copy, mc_passes
from .nets import build_network


def read_model_dir(model_dir) -> Tuple[dict, dict]:
    """(manifest, config) of a finished MODEL_DIR; one-line errors otherwise."""
    model_dir = Path(model_dir)
    if not (model_dir / "manifest.json").is_file() or not (model_dir / "config.json").is_file():
        raise AlsegError(f"{model_dir}: not a model directory (no manifest.json/config.json); "
                         f"train one with 'alseg train-seg'")
    manifest = load_manifest(model_dir / "manifest.json", expect=["model"])
    return manifest, json.loads((model_dir / "config.json").read_text())


def load_model(model_dir, member: Optional[int] = None, device="auto", checkpoint: str = "best") -> nn.Module:
    """The network of one member (default: the best on validation), in eval mode."""
    manifest, config = read_model_dir(model_dir)
    member = manifest["best_member"] if member is None else int(member)
    if not 0 <= member < len(manifest["members"]):
        raise AlsegError(f"{model_dir}: member {member} does not exist ({len(manifest['members'])} members)")
    path = Path(model_dir) / manifest["members"][member]["dir"] / f"{checkpoint}.pt"
    if not path.is_file():
        raise AlsegError(f"{path}: checkpoint missing; retrain the model")
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    net = build_network(config["model"], config["in_channels"], config["num_classes"], config["base_channels"],
                        **(config.get("network_options") or {}))
    state = load_checkpoint(path)
    net.load_state_dict(state["state_dict"])
    return net.to(dev).eval()


def enable_mc_dropout(net: nn.Module) -> nn.Module:
    """Eval mode everywhere (BN uses running stats) except the dropout layers."""
    net.eval()
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    return net


def iter_predictions(model_dirs: Sequence, store: DatasetStore, indices, mode: str = "softmax",
                     samples: int = 40, seed: int = 0, device="auto",
                     batch_size: int = 16) -> Iterator[Tuple[np.ndarray, torch.Tensor]]:
    """Yield (batch_indices, probs (S, b, K, H, W) float32 on CPU) over ``indices`` in order.

    mode "softmax": S=1, best member of model_dirs[0]; "mc": S=samples MC-dropout passes of
    that member (``mc_passes``: the masks of a plain loop of passes on CPU); the dropout masks
    come from a generator seeded with (seed, batch start), so a call is reproducible for a
    given seed and batch_size; "ensemble": S = every member of every model dir, in order
    (members of model_dirs[0] first). Callers predicting many index sets (evaluation, one
    volume at a time) load once with ``prediction_nets`` and call ``predict_batches``.
    """
    nets = prediction_nets(model_dirs, store, mode, device)
    return predict_batches(nets, store, indices, mode, samples, seed, batch_size)


def prediction_nets(model_dirs: Sequence, store: DatasetStore, mode: str = "softmax",
                    device="auto") -> List[nn.Module]:
    """The networks a prediction mode uses, checked against the store and made ready for
    inference (folded batch-norm, channels-last where the network prefers it: equal to
    float rounding)."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    if not model_dirs:
        raise AlsegError("no model directory given")
    if mode not in ("softmax", "mc", "ensemble"):
        raise AlsegError(f"prediction mode {mode!r}: choose softmax, mc or ensemble")
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    nets: List[nn.Module] = []
    for d in model_dirs if mode == "ensemble" else model_dirs[:1]:
        manifest, config = read_model_dir(d)
        check_compatible(config, store, d)
        members = range(len(manifest["members"])) if mode == "ensemble" else [None]
        nets += [load_model(d, m, dev) for m in members]
    return [inference_copy(net, getattr(net, "prefers_channels_last", False)) for net in nets]


def predict_batches(nets: List[nn.Module], store: DatasetStore, indices, mode: str = "softmax",
                    samples: int = 40, seed: int = 0,
                    batch_size: int = 16) -> Iterator[Tuple[np.ndarray, torch.Tensor]]:
    """``iter_predictions`` with networks from ``prediction_nets``."""
    if mode == "mc" and int(samples) < 1:
        raise AlsegError(f"--samples {samples}: must be at least 1")
    indices = np.asarray(indices, dtype=np.int64)
    if getattr(nets[0], "volumetric", False):
        yield from _volume_batches(nets, store, indices, mode)
        return
    dev = next(nets[0].parameters()).device
    for start in range(0, len(indices), int(batch_size)):
        idx = indices[start:start + int(batch_size)]
        x = torch.from_numpy(store.images(idx)).to(dev)
        if mode == "mc":
            # one fork of the global generator per batch, seeded from (seed, batch start), so
            # the passes differ from each other, are reproducible, and leave global state alone
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(int(seed) * 1_000_003 + start)
                probs = mc_passes(nets[0], x, int(samples))
        else:
            with torch.inference_mode():
                probs = torch.stack([net(like_weights(net, x)).float().softmax(1).contiguous() for net in nets])
        yield idx, probs.cpu()


def _volume_batches(nets, store: DatasetStore, indices: np.ndarray, mode: str):
    """A 3D network sees whole volumes: each run of ``indices`` in one volume is answered from
    that volume's prediction (all its slices in z order), in the order asked."""
    if mode == "mc":
        raise AlsegError("MC dropout needs a 2D network with dropout; a 3D U-Net has none")
    dev = next(nets[0].parameters()).device
    start = 0
    while start < len(indices):
        vol = store.volumes[indices[start]]
        stop = start
        while stop < len(indices) and store.volumes[indices[stop]] == vol:
            stop += 1
        order = store.volume_slices(vol)
        x = torch.from_numpy(store.images(order)).to(dev).permute(1, 0, 2, 3)[None]    # (1, C, D, H, W)
        with torch.inference_mode():
            probs = torch.stack([net(x).float().softmax(1)[0].permute(1, 0, 2, 3) for net in nets])  # (S, D, K, H, W)
        row = {int(i): k for k, i in enumerate(order)}
        idx = indices[start:stop]
        yield idx, probs[:, [row[int(i)] for i in idx]].cpu()
        start = stop
