"""Training a 3D network (unet3d) on whole labelled volumes: one member, as ``_train_member``
does for slices, with the same recipe parts, checkpoints and records.

A batch holds max(1, batch_size // depth) volumes (``batch_size`` counts slices, so a 3D
iteration costs about what a 2D one does), cropped to a common random window of depth equal
to the shallowest volume drawn; augmentation is the paper's rot90 + flip in-plane (p 0.5),
the same for every slice of a volume (the small rotations are left out). Validation: the 3D
Dice of each validation volume predicted whole. A killed member resumes from its last
validation (``last.pt``: weights, optimiser, generator and curve), as 2D members do.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..device import torch_generator
from ..metrics.dice import dice_per_class
from .checkpoint import MemberState, finished, timer
from .losses import full_loss
from .nets import build_network
from .recipe import ce_weights, degenerate, lr_at, make_optimizer

Volume = Tuple[torch.Tensor, torch.Tensor]     # image (C, D, H, W) float, mask (D, H, W) integer


def _batch(volumes: List[Volume], per_batch: int, gen: torch.Generator):
    pick = torch.randint(len(volumes), (per_batch,), generator=gen).tolist()
    depth = min(volumes[p][0].shape[1] for p in pick)
    xs, ys = [], []
    for p in pick:
        img, lab = volumes[p]
        z0 = int(torch.randint(img.shape[1] - depth + 1, (1,), generator=gen))
        x, y = img[:, z0:z0 + depth], lab[z0:z0 + depth]
        if float(torch.rand(1, generator=gen)) < 0.5:          # rot90 by k, then a flip in-plane
            k, ax = int(torch.randint(4, (1,), generator=gen)), int(torch.randint(2, (1,), generator=gen))
            x = torch.flip(torch.rot90(x, k, (2, 3)), (2 + ax,))
            y = torch.flip(torch.rot90(y, k, (1, 2)), (1 + ax,))
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def _validate(net, val: List[Volume], num_classes: int, dev):
    net.eval()
    preds, masks, scores = [], [], []
    classes = list(range(1, num_classes))
    for img, lab in val:
        pred = net(img[None].to(dev)).argmax(1)[0].cpu().numpy().astype(np.uint8)
        scores.append(dice_per_class(pred, lab.numpy(), classes))
        preds.append(pred)
        masks.append(lab.numpy())
    pred, mask = np.concatenate(preds), np.concatenate(masks)
    return float(np.mean(np.mean(scores, axis=0))), degenerate(pred, mask, num_classes)


def train_member_3d(mdir: Path, config, recipe, volumes: List[Volume], _targets, val: List[Volume], _fill,
                    seed, iterations, batch_size, lr, val_every, dev, backbone_weights, reporter, label,
                    init_state=None) -> Dict:
    """One member on whole volumes; the same signature and records as ``_train_member``."""
    done = finished(mdir)
    if done is not None:
        return done
    mdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = build_network(config["model"], config["in_channels"], config["num_classes"], config["base_channels"],
                        **(config.get("network_options") or {})).to(dev)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = make_optimizer(recipe["optimizer"], net.parameters(), lr)
    gen = torch_generator(seed)
    weights = ce_weights(recipe["class_weights"], torch.cat([v[1].flatten() for v in volumes]), config["num_classes"])
    weights = None if weights is None else weights.to(dev)
    depth = int(np.median([v[0].shape[1] for v in volumes]))
    per_batch = max(1, int(batch_size) // max(1, depth))
    state = MemberState.resume(mdir, net, opt, gen, dev)
    losses = []
    reporter.start(label, iterations, state.it)
    start = timer(state)
    try:
        for it in range(state.it + 1, iterations + 1):
            net.train()
            x, y = _batch(volumes, per_batch, gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(it - 1, iterations, lr, recipe["warmup"])
            loss = full_loss(net(x.to(dev)).float(), y.to(dev).long(), weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(net.parameters(), recipe["clip_grad"])
            opt.step()
            state.it = it
            losses.append(float(loss.detach()))
            if it % val_every == 0 or it == iterations:
                t_val = time.time()
                vd, why = _validate(net, val, config["num_classes"], dev)
                state.val_seconds += time.time() - t_val
                state.validated(net, opt, gen, config, vd, why, losses, time.time() - start)
                losses = []
                reporter.note(f"{label} it {it}/{iterations} loss {state.curve[-1]['loss']:.4f} val Dice {vd:.3f} "
                              f"(best {state.best:.3f})")
            reporter.update(label, it, f"loss {float(loss.detach()):.3f}")
    finally:
        reporter.finish(label)
    return state.finish(config, seed, time.time() - start, channels_last=False, volumes_per_batch=per_batch)
