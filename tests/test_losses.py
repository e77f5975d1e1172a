"""GCL losses against literal, slow implementations of method.md eq. 4 and NT-Xent."""
import math

import pytest
import torch

from alseg_cli import gcl_total_loss, group_contrastive_loss, nt_xent_loss
from alseg_cli.encoders.losses import default_weights


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def literal_group_loss(z, g, p, tau, G):
    """Eq. 4 with 1-based indices written as in the paper: a triple loop."""
    n = len(g)
    z = z.double()
    g2, p2 = list(g) + list(g), list(p) + list(p)
    total = 0.0
    for i in range(n):
        for j in range(n, 2 * n):
            if j == i or g2[j] != g2[i]:
                continue
            den = 0.0
            for k in range(2 * n):
                if k != i and (g2[k] == g2[i] or p2[k] != p2[i]):
                    den += math.exp(cos(z[i], z[k]) / tau)
            total += math.log(math.exp(cos(z[i], z[j]) / tau) / den)
    return -total / (n * G)


def literal_nt_xent(z, tau):
    two_n = z.shape[0]
    n = two_n // 2
    z = z.double()
    total = 0.0
    for i in range(two_n):
        j = (i + n) % two_n
        den = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(two_n) if k != i)
        total += -math.log(math.exp(cos(z[i], z[j]) / tau) / den)
    return total / two_n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_loss_matches_literal(seed):
    gen = torch.Generator().manual_seed(seed)
    n, d = 7, 5
    z = torch.randn(2 * n, d, generator=gen)
    g = torch.randint(0, 3, (n,), generator=gen)
    p = torch.randint(0, 2, (n,), generator=gen)
    got = group_contrastive_loss(z, g, p, tau=0.5, G=2.5)
    assert got.item() == pytest.approx(literal_group_loss(z, g.tolist(), p.tolist(), 0.5, 2.5), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_nt_xent_matches_literal(seed):
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(seed))
    assert nt_xent_loss(z, 0.3).item() == pytest.approx(literal_nt_xent(z, 0.3), rel=1e-5)


def test_group_loss_hand_computed_n2():
    # N = 2, orthonormal-ish rows: z0=(1,0), z1=(0,1), views z2=(1,0), z3=(1,1)/sqrt2.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    tau, G = 1.0, 2.0
    r = 1 / math.sqrt(2)
    # same group, same patient: every k != i is in the denominator; positives j = 2, 3.
    # i = 0: sims to k=1,2,3: 0, 1, r; i = 1: sims to k=0,2,3: 0, 0, r
    den0 = math.exp(0) + math.exp(1) + math.exp(r)
    den1 = math.exp(0) + math.exp(0) + math.exp(r)
    expect = -(math.log(math.e / den0) + math.log(math.exp(r) / den0)
               + math.log(1 / den1) + math.log(math.exp(r) / den1)) / (2 * G)
    got = group_contrastive_loss(z, torch.tensor([0, 0]), torch.tensor([0, 0]), tau, G)
    assert got.item() == pytest.approx(expect, rel=1e-6)
    # different groups, same patient: k = 1 and k = 3 leave i = 0's denominator; one positive.
    expect2 = -(math.log(math.e / math.e) + math.log(math.exp(r) / math.exp(r))) / (2 * G)
    got2 = group_contrastive_loss(z, torch.tensor([0, 1]), torch.tensor([0, 0]), tau, G)
    assert got2.item() == pytest.approx(expect2, abs=1e-6)
    # different groups, different patients: ordinary denominator, one positive each.
    expect3 = -(math.log(math.e / den0) + math.log(math.exp(r) / den1)) / (2 * G)
    got3 = group_contrastive_loss(z, torch.tensor([0, 1]), torch.tensor([0, 1]), tau, G)
    assert got3.item() == pytest.approx(expect3, rel=1e-6)


def test_gradients_flow_and_total_is_weighted_sum():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(8, 6, generator=gen, requires_grad=True)
    pat = torch.tensor([0, 0, 1, 1])
    vol = torch.tensor([0, 1, 2, 2])
    w = [1.0, 0.05, 0.35, 0.0]
    total, parts = gcl_total_loss(z, 0.5, w, groups={"patient": pat, "volume": vol}, patients=pat,
                                  G={"patient": 16.0, "volume": 8.0}, return_parts=True)
    expect = (nt_xent_loss(z, 0.5) + 0.05 * group_contrastive_loss(z, pat, pat, 0.5, 16.0)
              + 0.35 * group_contrastive_loss(z, vol, pat, 0.5, 8.0))
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert set(parts) == {"nt_xent", "patient", "volume"}
    total.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bad_inputs():
    z = torch.randn(6, 3)
    with pytest.raises(ValueError):
        group_contrastive_loss(z, torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 0.5, 1.0)
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(5, 3), 0.5)
    with pytest.raises(ValueError):
        gcl_total_loss(z, 0.5, [1, 0.1, 0, 0])   # patient weight without labels
    with pytest.raises(ValueError):
        default_weights(["frames"])


def test_default_weights_follow_paper():
    assert default_weights(["patient", "volume"]) == [1.0, 0.05, 0.35, 0.0]
    assert default_weights(["patient", "volume", "slice"]) == [1.0, 0.05, 0.35, 0.025]
    assert default_weights(["volume"]) == [1.0, 0.0, 0.35, 0.0]
    assert default_weights([]) == [1.0, 0.0, 0.0, 0.0]
