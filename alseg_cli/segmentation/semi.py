"""ARCO semi-supervised training (You et al. 2023; seed-methods.md section 2): `train-seg --semi arco`.

Every iteration adds, to the labelled loss, terms on a batch of the pool's unlabelled slices:

- L_unsup: a mean teacher (EMA of the student, decay 0.99) labels the weak view; the student
  sees a strong view (cutmix between the batch's slices plus intensity jitter) and is trained
  with CE against the teacher's argmax, weighted per image by the fraction of its pixels with
  teacher confidence >= 0.97 (the reference code's rule; the manuscript only names the term).
- L_contrast (weight 0.01): pixel contrast with class prototypes. For each class, anchors are
  student pixel representations drawn by ARCO's sampler (pixel_sampling.py: SG, SAG or NS)
  from the valid pixels of that class: the labelled pixels of the class and the unlabelled
  pixels the teacher gives it with entropy within the alpha_t lowest percent,
  alpha_t = 20 (1 - t/T). The positive is the class prototype (mean teacher representation
  of the class's valid pixels); negatives are drawn from a FIFO memory bank of teacher
  representations of the other classes; CE over cosine / 0.5. The loss's form (appendix
  E.2) is not in the manuscript: this follows the reference code's structure, simplified
  (negatives: any valid pixel of another class, not U2PL's rank window).
- L_eqv (code-only, off by default; ``eqv_weight``): the student's prediction of a mirrored,
  rescaled slice against the same warp of its prediction (KL, foreground pixels with
  confidence >= 0.7). The reference code's L_nn is left out: it has no gradient there.

The representation head (1x1 conv, BN, ReLU, 1x1 conv on the last decoder features) and the
teacher are trained / tracked beside the network and checkpointed with it; the saved model
is the student alone. Full masks only (ARCO defines no scribble variant).
"""
from __future__ import annotations

import copy
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import AlsegError
from .pixel_sampling import SAMPLERS, stratified_sample

DEFAULTS = {"sampler": "sg", "grid": 4, "ema": 0.99, "unsup_weight": 1.0, "contrast_weight": 0.01,
            "anchors": 256, "negatives": 512, "bank": 4096, "temperature": 0.5, "confidence": 0.97,
            "rep_dim": 64, "unlabelled_batch": 0, "eqv_weight": 0.0}
SEMI_MODES = ("arco",)


def resolve_semi(semi: str, options: Optional[Dict], supervision: str, model: str) -> Dict:
    """The ARCO settings (DEFAULTS under ``options``), checked before any training."""
    if semi not in SEMI_MODES:
        raise AlsegError(f"--semi {semi!r}: choose {', '.join(SEMI_MODES)}")
    if supervision != "full":
        raise AlsegError("--semi arco trains on full masks (ARCO defines no scribble variant); use --supervision full")
    if model != "unet":
        raise AlsegError("--semi arco needs the 2D UNet (--model unet): its pixel contrast reads the decoder's features")
    cfg = {**DEFAULTS, **(options or {})}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise AlsegError(f"--semi arco: unknown option {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
    if cfg["sampler"] not in SAMPLERS:
        raise AlsegError(f"--arco-sampler {cfg['sampler']!r}: choose {', '.join(SAMPLERS)}")
    if not 0 <= cfg["ema"] < 1 or cfg["grid"] < 1 or cfg["anchors"] < 1 or cfg["negatives"] < 1:
        raise AlsegError("--semi arco: ema in [0, 1), grid, anchors and negatives >= 1")
    return {"mode": semi, **cfg}


def cutmix(x: torch.Tensor, gen: torch.Generator):
    """Pairs each slice with another of the batch and pastes a random box of it (area up to 1/2):
    returns the mixed batch and a function that mixes any (B, ..., H, W) tensor the same way."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    partner = torch.randperm(b, generator=gen)
    box = torch.zeros(b, h, w, dtype=torch.bool)
    for i in range(b):
        frac = math.sqrt(float(torch.rand(1, generator=gen)) * 0.5)
        bh, bw = max(1, int(h * frac)), max(1, int(w * frac))
        r, c = int(torch.randint(0, h - bh + 1, (1,), generator=gen)), int(torch.randint(0, w - bw + 1, (1,), generator=gen))
        box[i, r:r + bh, c:c + bw] = True

    def mix(t: torch.Tensor) -> torch.Tensor:
        m = box.to(t.device).reshape((b,) + (1,) * (t.ndim - 3) + (h, w))
        return torch.where(m, t[partner.to(t.device)], t)
    return mix(x), mix


def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-slice contrast and brightness changes and Gaussian noise (the strong view's intensity part)."""
    b = x.shape[0]
    scale = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)
    shift = 0.2 * torch.rand(b, 1, 1, 1, generator=gen) - 0.1
    noise = 0.05 * torch.randn(x.shape, generator=gen)
    return x * scale.to(x.device) + shift.to(x.device) + noise.to(x.device)


class Arco(nn.Module):
    """The state ARCO adds to a member: teacher, representation heads, memory banks."""

    def __init__(self, net: nn.Module, cfg: Dict, pool: torch.Tensor, num_classes: int, feat_channels: int):
        super().__init__()
        self.cfg, self.pool, self.k = cfg, pool, int(num_classes)
        if pool.shape[0] == 0:
            raise AlsegError("--semi arco: the pool has no unlabelled slice")
        d = int(cfg["rep_dim"])
        self.head = nn.Sequential(nn.Conv2d(feat_channels, feat_channels, 1), nn.BatchNorm2d(feat_channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(feat_channels, d, 1))
        self.teacher = copy.deepcopy(net)
        self.teacher_head = copy.deepcopy(self.head)
        for p in list(self.teacher.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)
        self.register_buffer("bank", torch.zeros(self.k, int(cfg["bank"]), d))
        self.register_buffer("bank_fill", torch.zeros(self.k, dtype=torch.long))
        self.register_buffer("bank_ptr", torch.zeros(self.k, dtype=torch.long))

    def trainable(self):
        return self.head.parameters()

    @torch.no_grad()
    def update_teacher(self, net: nn.Module) -> None:
        """EMA of the student's (and head's) weights; buffers (batch-norm statistics) copied."""
        a = float(self.cfg["ema"])
        for t, s in ((self.teacher, net), (self.teacher_head, self.head)):
            for pt, ps in zip(t.parameters(), s.parameters()):
                pt.mul_(a).add_(ps.detach(), alpha=1 - a)
            for bt, bs in zip(t.buffers(), s.buffers()):
                bt.copy_(bs)

    def loss(self, net: nn.Module, x_l: torch.Tensor, y_l: torch.Tensor, feat_l: torch.Tensor, it: int,
             iterations: int, gen: torch.Generator) -> torch.Tensor:
        cfg, dev = self.cfg, x_l.device
        bu = int(cfg["unlabelled_batch"]) or x_l.shape[0]
        u = self.pool[torch.randint(0, self.pool.shape[0], (bu,), generator=gen)].to(dev)
        with torch.no_grad():
            self.teacher.eval(), self.teacher_head.eval()
            t_logits, t_feat = self.teacher.forward_features(u)
            t_prob = t_logits.float().softmax(1)
            t_rep_u = F.normalize(self.teacher_head(t_feat).float(), dim=1)
            t_rep_l = F.normalize(self.teacher_head(self.teacher.forward_features(x_l)[1]).float(), dim=1)
        conf, pl = t_prob.max(1)
        entropy = -(t_prob * t_prob.clamp(min=1e-8).log()).sum(1)
        strong, mix = cutmix(u, gen)
        strong = jitter(strong, gen)
        pl_m, conf_m, ent_m, t_rep_m = mix(pl), mix(conf), mix(entropy), mix(t_rep_u)
        s_logits, s_feat = net.forward_features(strong)
        # L_unsup: CE against the teacher's labels, per image weighted by its confident share
        ce = F.cross_entropy(s_logits.float(), pl_m, reduction="none").flatten(1).mean(1)
        share = (conf_m >= float(cfg["confidence"])).flatten(1).float().mean(1)
        total = float(cfg["unsup_weight"]) * (ce * share).mean()
        if cfg["contrast_weight"]:
            alpha = 20.0 * (1.0 - it / max(1, iterations))
            reliable = ent_m <= torch.quantile(ent_m.flatten().float(), alpha / 100.0) if alpha > 0 \
                else torch.zeros_like(ent_m, dtype=torch.bool)
            reps = F.normalize(self.head(torch.cat([feat_l, s_feat])).float(), dim=1)
            labels = torch.cat([y_l.long(), pl_m])
            valid = torch.cat([torch.ones_like(y_l, dtype=torch.bool), reliable])
            teacher_reps = torch.cat([t_rep_l, t_rep_m])
            total = total + float(cfg["contrast_weight"]) * self._contrast(reps, teacher_reps, labels, valid, gen)
        if cfg["eqv_weight"]:
            total = total + float(cfg["eqv_weight"]) * self._equivariance(net, u, gen)
        return total

    def _contrast(self, reps, teacher_reps, labels, valid, gen) -> torch.Tensor:
        cfg = self.cfg
        d = reps.shape[1]
        flat_s = reps.permute(0, 2, 3, 1).reshape(-1, d)
        flat_t = teacher_reps.permute(0, 2, 3, 1).reshape(-1, d)
        terms = []
        present = [c for c in range(self.k) if ((labels == c) & valid).any()]
        for c in present:
            cand = (labels == c) & valid
            others = [o for o in present if o != c]
            bank = torch.cat([self.bank[o, :int(self.bank_fill[o])] for o in range(self.k) if o != c])
            if not others and bank.shape[0] == 0:
                continue
            idx = stratified_sample(cand.cpu(), int(cfg["anchors"]), int(cfg["grid"]), cfg["sampler"], gen).to(reps.device)
            anchors = flat_s[idx]
            proto = F.normalize(flat_t[cand.reshape(-1)].mean(0), dim=0)
            current = flat_t[torch.nonzero(valid.reshape(-1) & (labels.reshape(-1) != c)
                                           & torch.isin(labels.reshape(-1), torch.tensor(others, device=labels.device))
                                           ).flatten()] if others else flat_t[:0]
            negs_all = torch.cat([bank, current])
            pick = torch.randint(0, negs_all.shape[0], (anchors.shape[0], int(cfg["negatives"])), generator=gen)
            negs = negs_all[pick.to(negs_all.device)]                          # (A, Nn, D)
            pos = (anchors * proto).sum(1, keepdim=True)
            neg = torch.einsum("ad,and->an", anchors, negs)
            logits = torch.cat([pos, neg], 1) / float(cfg["temperature"])
            terms.append(F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)))
        with torch.no_grad():
            for c in present:
                cand = torch.nonzero(((labels == c) & valid).reshape(-1)).flatten()
                take = cand[torch.randperm(cand.numel(), generator=gen)[: int(cfg["anchors"])].to(cand.device)]
                self._push(c, flat_t[take])
        return torch.stack(terms).mean() if terms else reps.sum() * 0.0

    def _push(self, c: int, rows: torch.Tensor) -> None:
        size = self.bank.shape[1]
        rows = rows[-size:]
        at = (int(self.bank_ptr[c]) + torch.arange(rows.shape[0], device=rows.device)) % size
        self.bank[c, at] = rows
        self.bank_ptr[c] = (int(self.bank_ptr[c]) + rows.shape[0]) % size
        self.bank_fill[c] = min(size, int(self.bank_fill[c]) + rows.shape[0])

    def _equivariance(self, net, u, gen) -> torch.Tensor:
        """Code-only L_eqv: KL(student(warp(u)) || warp(student(u))), confident foreground only."""
        b = u.shape[0]
        s = 0.8 + 0.4 * torch.rand(b, generator=gen)
        flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = flip / s, 1.0 / s
        grid = F.affine_grid(theta.to(u.device), list(u.shape), align_corners=False)
        with torch.no_grad():
            target = F.grid_sample(net(u).float().softmax(1), grid, align_corners=False)
        pred = net(F.grid_sample(u, grid, align_corners=False)).float().log_softmax(1)
        keep = (target[:, 1:].max(1).values >= 0.7).float()
        kl = (target * (target.clamp(min=1e-8).log() - pred)).sum(1)
        return (kl * keep).sum() / keep.sum().clamp(min=1.0)
