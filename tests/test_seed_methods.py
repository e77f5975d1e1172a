"""The related papers' methods against literal implementations: SP-Con's losses and sampler
(Peng et al.), ARCO's anchor samplers (You et al.), k-NN label propagation (Belharbi et al.)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alseg_cli.acquisition.propagate import (hist_jsd_distance, intensity_histograms, jsd, l2_distance,
                                             propagation_mask)
from alseg_cli.encoders.losses import (nt_xent_loss, self_paced_regulariser, self_paced_weights, supcon_loss,
                                       supcon_terms)
from alseg_cli.encoders.pretrain import pace, parse_meta, volume_phases
from alseg_cli.encoders.sampler import partition_batches, position_partition
from alseg_cli.errors import AlsegError
from alseg_cli.segmentation.pixel_sampling import allocate, group_ids, stratified_sample

torch.set_num_threads(1)


# ---- SP-Con -------------------------------------------------------------------------------

def literal_supcon(z, labels, tau, w=None):
    """SupCon L_out written out with loops: every one of the 2N rows anchors."""
    zn = torch.nn.functional.normalize(z.double(), dim=1)
    y = list(labels) * 2
    n2 = len(y)
    total = 0.0
    for i in range(n2):
        denom = sum(math.exp(float(zn[i] @ zn[a]) / tau) for a in range(n2) if a != i)
        pos = [j for j in range(n2) if j != i and y[j] == y[i]]
        li = [-(float(zn[i] @ zn[j]) / tau - math.log(denom)) for j in pos]
        wi = [1.0 if w is None else float(w[i, j]) for j in pos]
        total += sum(a * b for a, b in zip(wi, li)) / len(pos)
    return total / n2


def test_supcon_with_distinct_labels_is_nt_xent():
    z = torch.randn(16, 7, generator=torch.Generator().manual_seed(0))
    assert float(supcon_loss(z, torch.arange(8), 0.5)) == pytest.approx(float(nt_xent_loss(z, 0.5)), abs=1e-6)


def test_supcon_matches_literal_with_shared_labels_and_weights():
    g = torch.Generator().manual_seed(1)
    z, labels = torch.randn(12, 5, generator=g), torch.tensor([0, 1, 0, 2, 1, 0])
    assert float(supcon_loss(z, labels, 0.3)) == pytest.approx(literal_supcon(z, labels.tolist(), 0.3), rel=1e-5)
    l, _ = supcon_terms(z, labels, 0.3)
    w = self_paced_weights(l, 4.0, "linear")
    got = float(supcon_loss(z, labels, 0.3, gamma=4.0, mode="linear"))
    assert got == pytest.approx(literal_supcon(z, labels.tolist(), 0.3, w), rel=1e-5)


def test_huge_pace_is_plain_supcon_and_weights_carry_no_gradient():
    g = torch.Generator().manual_seed(2)
    z, labels = torch.randn(10, 4, generator=g, requires_grad=True), torch.tensor([0, 0, 1, 1, 2])
    with torch.no_grad():
        assert float(supcon_loss(z, labels, 0.1, gamma=1e9)) == pytest.approx(float(supcon_loss(z, labels, 0.1)), rel=1e-6)
    l, _ = supcon_terms(z, labels, 0.1)
    for mode in ("hard", "linear"):
        assert not self_paced_weights(l, 3.0, mode).requires_grad
    # the gradient equals that of sum w*l with w a constant
    loss = supcon_loss(z, labels, 0.1, gamma=3.0, mode="linear")
    (grad,) = torch.autograd.grad(loss, z)
    l2, pos = supcon_terms(z, labels, 0.1)
    w = self_paced_weights(l2, 3.0, "linear").clone()
    ref = ((w * l2 * pos).sum(1) / pos.sum(1)).mean()
    (grad_ref,) = torch.autograd.grad(ref, z)
    assert torch.allclose(grad, grad_ref, atol=1e-6)


@pytest.mark.parametrize("mode", ["hard", "linear"])
def test_self_paced_weights_are_the_argmin_on_a_grid(mode):
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for loss in (0.1, 1.3, 2.9, 4.0, 7.5):
        for gamma in (0.5, 3.0, 6.0):
            objective = grid * loss + self_paced_regulariser(grid, gamma, mode)
            w = float(self_paced_weights(torch.tensor(loss, dtype=torch.float64), gamma, mode))
            best = float(objective.min())
            at_w = float(w * loss + self_paced_regulariser(torch.tensor(w, dtype=torch.float64), gamma, mode))
            assert at_w <= best + 1e-9


def test_pair_losses_are_bounded():
    n, tau = 15, 0.07
    z = torch.randn(2 * n, 16, generator=torch.Generator().manual_seed(3))
    l, _ = supcon_terms(z, torch.arange(n) % 4, tau)
    off = l[~torch.eye(2 * n, dtype=torch.bool)]
    assert float(off.max()) <= math.log(2 * n - 1) + 2 / tau + 1e-4


def test_position_partition_sizes_differ_by_at_most_one():
    for z_len in range(1, 25):
        for s in (1, 3, 5, 7):
            parts = position_partition(np.arange(z_len), np.full(z_len, z_len), s)
            counts = np.bincount(parts, minlength=min(s, z_len))
            counts = counts[counts > 0]
            assert parts.max() < s and np.all(np.diff(parts) >= 0)
            assert counts.max() - counts.min() <= 1


def test_partition_batches_take_distinct_volumes_one_slice_per_partition():
    vols = np.repeat([f"v{i}" for i in range(7)], [9, 9, 6, 2, 9, 3, 8])
    pos = np.concatenate([np.arange(n) for n in (9, 9, 6, 2, 9, 3, 8)])
    lengths = np.concatenate([np.full(n, n) for n in (9, 9, 6, 2, 9, 3, 8)])
    part = position_partition(pos, lengths, 3)
    batches = partition_batches(vols, part, 4, seed=5, batches=6)
    assert batches == partition_batches(vols, part, 4, seed=5, batches=6)
    assert batches != partition_batches(vols, part, 4, seed=6, batches=6)
    for b in batches:
        keys = [(vols[i], part[i]) for i in b]
        assert len(set(keys)) == len(keys)                       # one slice per (volume, partition)
        assert len({vols[i] for i in b}) == 4                    # m distinct volumes
        for v in {vols[i] for i in b}:                          # every non-empty partition of each
            assert {part[i] for i in b if vols[i] == v} == set(part[vols == v])


def test_pace_phase_and_meta():
    assert pace(0, 10, 2, 50) == 2 and pace(10, 10, 2, 50) == 50
    assert pace(4, 16, 2, 50) == pytest.approx(2 + 48 * 0.5)
    names = ["p1_frame01", "p1_frame01", "p1_frame12", "p2_frame04", "p2_frame01"]
    assert volume_phases(names).tolist() == [0, 0, 1, 1, 0]
    assert volume_phases(["case_001", "case_002"]) is None
    assert parse_meta(None, True) == ["position", "patient", "phase"]
    assert parse_meta(None, False) == ["position", "patient"]
    with pytest.raises(AlsegError, match="no cardiac phase"):
        parse_meta("position,phase", False)
    with pytest.raises(AlsegError, match="unknown meta-label"):
        parse_meta("position,organ", True)


def test_sp_supcon_pretraining_feeds_spcon_coreset_only(phantom_store, tmp_path):
    from alseg_cli.acquisition.select import select
    from alseg_cli.encoders.embed import embed
    from alseg_cli.encoders.pretrain import pretrain

    m = pretrain(phantom_store, tmp_path / "enc", loss="sp-supcon", epochs=2, split="train", size=16,
                 scans_per_batch=4, progress=False, device="cpu")
    cfg = m["config"]
    assert cfg["loss"] == "sp-supcon" and cfg["tau"] == 0.07 and cfg["batch_size"] == 12
    assert cfg["meta"] == ["position", "patient", "phase"] and cfg["lambdas"]["patient"] == 0.01
    hist = __import__("json").loads((tmp_path / "enc" / "loss.json").read_text())["history"]
    assert [h["gamma"] for h in hist] == [pytest.approx(2.0), pytest.approx(2 + 48 * 0.5 ** 0.5)]
    embed(phantom_store, tmp_path / "e.zarr", encoder=str(tmp_path / "enc"), device="cpu", progress=False)
    sel = select(method="spcon-coreset", budget="10%", dataset=phantom_store, embeddings=tmp_path / "e.zarr",
                 device="cpu")
    assert len(sel["selected"]) > 0
    with pytest.raises(AlsegError, match="GCL-trained encoder"):
        select(method="gcl-coreset", budget="10%", dataset=phantom_store, embeddings=tmp_path / "e.zarr",
               device="cpu")
    with pytest.raises(AlsegError, match="--groups belongs to --loss gcl"):
        pretrain(phantom_store, tmp_path / "x", loss="sp-supcon", groups="volume", epochs=1, progress=False)


# ---- ARCO's samplers -----------------------------------------------------------------------

def toy_candidates():
    g = torch.Generator().manual_seed(7)
    cand = torch.rand(2, 16, 16, generator=g) < 0.35
    cand[1, :8, :8] = False                                      # an empty cell region
    h = torch.randn(2, 16, 16, generator=g) + torch.linspace(0, 4, 16)[None, :, None]   # varies across cells
    return cand, h


def test_allocation_is_proportional_and_sums_to_n():
    sizes = torch.tensor([5, 0, 17, 3, 40, 1])
    for n in (1, 7, 33, 256):
        a = allocate(sizes, n)
        assert int(a.sum()) == n and int(a[1]) == 0
        assert torch.all((a.double() - n * sizes.double() / sizes.sum()).abs() < 1)


def _estimates(cand, h, mode, n, draws, seed=0):
    g = torch.Generator().manual_seed(seed)
    flat = h.reshape(-1)
    return torch.stack([flat[stratified_sample(cand, n, 4, mode, g)].mean() for _ in range(draws)]).double()


@pytest.mark.parametrize("mode", ["ns", "sg", "sag"])
def test_pooled_estimates_are_unbiased(mode):
    cand, h = toy_candidates()
    truth = float(h[cand].double().mean())
    est = _estimates(cand, h, mode, 24, 10_000)
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - truth) < 3 * se


def test_sg_variance_follows_the_weighted_theorem():
    # groups of equal size with n a multiple of their count: the allocation is exact
    cand = torch.ones(1, 8, 8, dtype=torch.bool)
    h = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(4)) + torch.arange(8.)[None, :, None] / 2
    n = 32
    gid = group_ids(cand, 4).reshape(-1)
    values = h.reshape(-1).double()
    mu = values.mean()
    var_ns = values.var(unbiased=False) / n
    w = torch.bincount(gid).double() / gid.numel()
    mus = torch.bincount(gid, weights=values) / torch.bincount(gid)
    var_sg_theory = var_ns - (w * (mus - mu) ** 2).sum() / n
    var_sg = _estimates(cand, h, "sg", n, 10_000).var()
    var_ns_mc = _estimates(cand, h, "ns", n, 10_000).var()
    assert float(var_sg) <= float(var_ns_mc)
    assert float(var_sg) == pytest.approx(float(var_sg_theory), rel=0.1)
    assert float(var_ns_mc) == pytest.approx(float(var_ns), rel=0.1)


def test_sag_draws_come_with_mirrored_partners():
    cand = torch.ones(1, 8, 8, dtype=torch.bool)                  # every mirror is a candidate
    idx = stratified_sample(cand, 32, 4, "sag", torch.Generator().manual_seed(0))
    assert idx.numel() == 32
    rows, cols = idx // 8, idx % 8
    # 16 cells of 2x2, 2 draws each: the pair is mirrored through the cell centre
    for cell in range(16):
        members = [(int(r), int(c)) for r, c in zip(rows, cols) if (r // 2) * 4 + c // 2 == cell]
        assert len(members) == 2
        (r1, c1), (r2, c2) = members
        r0, c0 = (cell // 4) * 2, (cell % 4) * 2
        assert (r1 + r2, c1 + c2) == (2 * r0 + 1, 2 * c0 + 1)


def test_nearest_fallback_is_biased_where_cells_are_not_symmetric():
    cand, h = toy_candidates()
    truth = float(h[cand].double().mean())
    g = torch.Generator().manual_seed(0)
    flat = h.reshape(-1)
    est = torch.stack([flat[stratified_sample(cand, 24, 4, "sag", g, fallback="nearest")].mean()
                       for _ in range(10_000)]).double()
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - truth) > 3 * se       # why "self" is the default


def test_sag_fallback_empty_cells_and_small_n():
    cand, _ = toy_candidates()
    for mode in ("sg", "sag", "ns"):
        idx = stratified_sample(cand, 3, 4, mode, torch.Generator().manual_seed(1))
        assert idx.numel() == 3 and bool(cand.reshape(-1)[idx].all())
        big = stratified_sample(cand, 200, 4, mode, torch.Generator().manual_seed(1))
        assert big.numel() == 200 and bool(cand.reshape(-1)[big].all())   # partners stay candidates
    assert stratified_sample(torch.zeros(1, 4, 4, dtype=torch.bool), 5).numel() == 0


# ---- k-NN label propagation ---------------------------------------------------------------

def test_jsd_properties():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5, 32, generator=g, dtype=torch.float64)
    p /= p.sum(1, keepdim=True)
    q = torch.rand(5, 32, generator=g, dtype=torch.float64)
    q /= q.sum(1, keepdim=True)
    assert torch.allclose(jsd(p, q), jsd(q, p))
    assert torch.allclose(jsd(p, p), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    disjoint = torch.zeros(2, 4, dtype=torch.float64)
    disjoint[0, 0] = disjoint[1, 3] = 1
    assert float(jsd(disjoint[0], disjoint[1])) == pytest.approx(math.log(2))
    assert bool((jsd(p, q) <= math.log(2)).all())


def brute_rule(d: np.ndarray, unlabelled, labelled, k):
    out = []
    for u in unlabelled:
        others = [j for j in range(d.shape[0]) if j != u]
        ranked = sorted(others, key=lambda j: d[u, j])
        out.append(any(j in set(labelled) for j in ranked[:k]))
    return np.array(out)


def test_toy_rule_counts_per_unlabelled_sample():
    # a labelled point at 0, an unlabelled one at 1 and a tight unlabelled cluster at 5
    x = torch.tensor([[0.0], [1.0], [5.0], [5.1], [5.2]])
    mask = propagation_mask(l2_distance(x), 5, np.arange(1, 5), np.array([0]), k=2)
    assert mask.tolist() == [True, False, False, False]   # 5's two nearest are 5.1 and 5.2
    # counting per labelled sample (its k nearest) would take 1 and 5: the rule is not that
    per_labelled = sorted(range(1, 5), key=lambda j: abs(float(x[j]) - 0.0))[:2]
    assert per_labelled == [1, 2]
    # ranks among all other rows, labelled included: at k = 4 every point has 0 within reach
    assert propagation_mask(l2_distance(x), 5, np.arange(1, 5), np.array([0]), k=4).tolist() == [True] * 4
    assert propagation_mask(l2_distance(x), 5, np.arange(1, 5), np.array([0]), k=3).tolist() == [True, False, False, False]


def test_chunked_rule_equals_brute_force_with_groups():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64)
    d = torch.cdist(x, x).numpy()
    lab = np.array([3, 17, 40])
    unl = np.setdiff1d(np.arange(60), lab)
    for k in (1, 4, 10):
        got = propagation_mask(l2_distance(x), 60, unl, lab, k, chunk_rows=7)
        assert got.tolist() == brute_rule(d, unl, lab, k).tolist()
    groups = np.arange(60) % 3
    got = propagation_mask(l2_distance(x), 60, unl, lab, 4, groups=groups, chunk_rows=5)
    dg = np.where(groups[:, None] == groups[None, :], d, np.inf)
    assert got.tolist() == brute_rule(dg, unl, lab, 4).tolist()


def test_histogram_distance_is_chunk_independent():
    imgs = np.random.default_rng(0).random((9, 1, 8, 8))
    h = intensity_histograms(imgs, bins=16)
    assert h.shape == (9, 1, 16) and np.allclose(h.sum(2), 1)
    dist = hist_jsd_distance(torch.from_numpy(h))
    full = dist(np.arange(9))
    assert torch.allclose(full, full.T) and torch.allclose(full.diagonal(), torch.zeros(9, dtype=full.dtype))
    a = propagation_mask(dist, 9, np.arange(2, 9), np.array([0, 1]), 3, chunk_rows=2)
    assert a.tolist() == brute_rule(full.numpy(), np.arange(2, 9), [0, 1], 3).tolist()


def test_random_rounding_keeps_expected_counts_proportional():
    sizes = torch.tensor([5, 0, 17, 3, 40, 1, 9])
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([allocate(sizes, 11, g) for _ in range(20_000)]).double()
    assert bool((draws.sum(1) == 11).all())
    expected = 11 * sizes.double() / sizes.sum()
    assert torch.allclose(draws.mean(0), expected, atol=0.02)
    assert bool(((draws - expected).abs() < 1).all())
