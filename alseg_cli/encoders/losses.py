"""GCL losses (method.md section 2): NT-Xent, the group contrastive loss (eq. 4), eq. 5.

Conventions shared by every function here: ``z`` is a (2N, D) tensor of projections, not
yet normalised; rows 0..N-1 are the first view of N slices and rows N..2N-1 the second
view of the same slices in the same order. Similarities are cosine similarities / tau.
Everything is vectorised over the batch (masks on a 2N x 2N similarity matrix).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

GROUP_KINDS = ("patient", "volume", "slice")   # the order of l1, l2, l3 in eq. 5


def _similarity(z: torch.Tensor, tau: float) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] % 2:
        raise ValueError(f"z must be (2N, D) with N slices and N views; got {tuple(z.shape)}")
    zn = F.normalize(z.float(), dim=1)
    return zn @ zn.T / tau


def nt_xent_loss(z: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's NT-Xent: every one of the 2N rows is an anchor whose only positive is
    its other view; the denominator runs over all 2N - 1 other rows. Mean over 2N anchors."""
    sim = _similarity(z, tau)
    two_n = sim.shape[0]
    n = two_n // 2
    sim = sim.masked_fill(torch.eye(two_n, dtype=torch.bool, device=sim.device), float("-inf"))
    partner = torch.arange(two_n, device=sim.device).roll(n)   # i <-> i + N
    return F.cross_entropy(sim, partner)


def group_contrastive_loss(z: torch.Tensor, groups: torch.Tensor, patients: torch.Tensor,
                           tau: float, G: float) -> torch.Tensor:
    """Eq. 4 exactly:

        -1/(N G) sum_{i<N} sum_{j>=N, j!=i, g_j=g_i}
            log( exp(s_ij) / sum_{k!=i, g_k=g_i or p_k!=p_i} exp(s_ik) )

    ``groups`` and ``patients`` are length-N integer tensors (the views share their
    slice's labels). Anchors are the N first-view rows only, as in the equation.
    """
    sim = _similarity(z, tau)
    n = sim.shape[0] // 2
    groups = torch.as_tensor(groups, device=sim.device).reshape(-1)
    patients = torch.as_tensor(patients, device=sim.device).reshape(-1)
    if groups.numel() != n or patients.numel() != n:
        raise ValueError(f"groups and patients need {n} entries (one per slice), "
                         f"got {groups.numel()} and {patients.numel()}")
    g2, p2 = torch.cat([groups, groups]), torch.cat([patients, patients])
    anchor = sim[:n]                                              # (N, 2N)
    same_group = groups[:, None] == g2[None, :]                   # (N, 2N)
    # Same-patient rows outside i's group leave the denominator, so that summing several
    # group losses never pushes apart what another grouping pulls together.
    allowed = same_group | (patients[:, None] != p2[None, :])
    not_self = ~torch.eye(n, 2 * n, dtype=torch.bool, device=sim.device)
    log_denom = torch.logsumexp(anchor.masked_fill(~(allowed & not_self), float("-inf")), dim=1)
    positives = same_group[:, n:]                                 # j in N..2N-1 (j != i always)
    log_prob = anchor[:, n:] - log_denom[:, None]
    return -(log_prob * positives).sum() / (n * float(G))


def default_weights(groups: Sequence[str], pretrained: bool = False) -> list:
    """The paper's best l0..l3 (appendix A) for the enabled groups.

    patient+volume -> (1, .05, .35, 0); +slice -> (1, .05, .35, .025); volume only ->
    (1, 0, .35, 0); other subsets keep those per-group values for the groups present.
    ``pretrained`` (segmentation weights) -> patient group alone, as in the paper.
    """
    groups = set(groups)
    unknown = groups - set(GROUP_KINDS)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)}; use {GROUP_KINDS}")
    if pretrained:
        return [0.0, 1.0, 0.0, 0.0]
    best = {"patient": 0.05, "volume": 0.35, "slice": 0.025}
    return [1.0] + [best[g] if g in groups else 0.0 for g in GROUP_KINDS]


def gcl_total_loss(z: torch.Tensor, tau: float, weights: Sequence[float],
                   groups: Optional[Mapping[str, torch.Tensor]] = None,
                   patients: Optional[torch.Tensor] = None,
                   G: Optional[Mapping[str, float]] = None, return_parts: bool = False):
    """Eq. 5: ``l0 * NT-Xent + l1 * L_patient + l2 * L_volume + l3 * L_slice``.

    ``groups`` maps a kind in ("patient", "volume", "slice") to its length-N labels and
    ``G`` maps it to the dataset's average slices per group. Terms with weight 0 are not
    computed. With ``return_parts`` also returns {name: float} of the unweighted terms.
    """
    if len(weights) != 4:
        raise ValueError(f"weights are l0..l3 (4 numbers), got {list(weights)}")
    groups, G = dict(groups or {}), dict(G or {})
    total = z.new_zeros((), dtype=torch.float32)
    parts: Dict[str, float] = {}
    if weights[0]:
        term = nt_xent_loss(z, tau)
        total = total + weights[0] * term
        parts["nt_xent"] = float(term.detach())
    for w, kind in zip(weights[1:], GROUP_KINDS):
        if not w:
            continue
        if kind not in groups or kind not in G or patients is None:
            raise ValueError(f"weight for the {kind} group is {w} but its labels, G or patients are missing")
        term = group_contrastive_loss(z, groups[kind], patients, tau, G[kind])
        total = total + w * term
        parts[kind] = float(term.detach())
    return (total, parts) if return_parts else total


# ---- SP-Con (Peng et al. 2021; seed-methods.md section 1) ------------------------------

SP_MODES = ("linear", "hard")


def supcon_terms(z: torch.Tensor, labels: torch.Tensor, tau: float):
    """l_ij = -log(exp(s_ij) / sum_{a != i} exp(s_ia)) over all 2N rows, and the positive mask
    P(i) = {j != i : y_j = y_i} (which holds i's other view). ``labels``: length N, one per slice."""
    sim = _similarity(z, tau)
    two_n = sim.shape[0]
    labels = torch.as_tensor(labels, device=sim.device).reshape(-1)
    if labels.numel() != two_n // 2:
        raise ValueError(f"labels need {two_n // 2} entries (one per slice), got {labels.numel()}")
    eye = torch.eye(two_n, dtype=torch.bool, device=sim.device)
    l = -(sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True))
    y = torch.cat([labels, labels])
    return l, (y[:, None] == y[None, :]) & ~eye


def self_paced_weights(l: torch.Tensor, gamma: float, mode: str = "linear") -> torch.Tensor:
    """The closed-form argmin over w in [0, 1] of w*l + R_gamma(w), computed without gradient
    (the alternating minimisation: w is fixed while theta takes its step).
    hard: R = -gamma*w -> 1[l < gamma]; linear: R = gamma*(w^2/2 - w) -> max(0, 1 - l/gamma)."""
    if mode not in SP_MODES:
        raise ValueError(f"self-paced mode {mode!r}: choose {SP_MODES}")
    with torch.no_grad():
        if mode == "hard":
            return (l < gamma).to(l.dtype)
        return (1.0 - l / gamma).clamp(min=0.0)


def self_paced_regulariser(w: torch.Tensor, gamma: float, mode: str = "linear") -> torch.Tensor:
    """R_gamma(w): constant once w is fixed, so it only changes the objective's logged value."""
    return -gamma * w if mode == "hard" else gamma * (w * w / 2 - w)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float, gamma: Optional[float] = None,
                mode: str = "linear", correct_grad: bool = False, return_objective: bool = False):
    """SupCon's L_out with every one of the 2N rows an anchor:
    1/(2N) sum_i 1/|P(i)| sum_{j in P(i)} w_ij l_ij, with w = 1 (``gamma`` None) or the self-paced
    weights of pace ``gamma``. ``correct_grad`` (the reference code's undocumented option):
    divide by the mean weight over the positive pairs. ``return_objective`` also returns the
    self-paced objective's value (with R), for logging."""
    l, pos = supcon_terms(z, labels, tau)
    w = torch.ones_like(l) if gamma is None else self_paced_weights(l, gamma, mode)
    count = pos.sum(1).clamp(min=1)
    loss = ((w * l * pos).sum(1) / count).mean()
    if correct_grad and gamma is not None:
        loss = loss / (w[pos].mean().clamp(min=1e-12))
    if not return_objective:
        return loss
    reg = 0.0 if gamma is None else ((self_paced_regulariser(w, gamma, mode) * pos).sum(1) / count).mean()
    return loss, float(loss.detach()) + float(reg)


def sp_total_loss(z: torch.Tensor, metas: Mapping[str, torch.Tensor], lambdas: Mapping[str, float], tau: float,
                  gamma: Optional[float], mode: str = "linear", correct_grad: bool = False):
    """Peng's pretraining objective sum_k lambda_k L^k_sp over the meta-labels given; returns
    (loss, {meta: unweighted term})."""
    total = z.new_zeros((), dtype=torch.float32)
    parts: Dict[str, float] = {}
    for kind, labels in metas.items():
        if not lambdas.get(kind):
            continue
        term = supcon_loss(z, labels, tau, gamma, mode, correct_grad)
        total = total + float(lambdas[kind]) * term
        parts[kind] = float(term.detach())
    return total, parts
