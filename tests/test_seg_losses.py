"""Segmentation losses and augmentation: literal formulas, pCE ignores unannotated pixels."""

import pytest
import torch
import torch.nn.functional as F

from alseg_cli.segmentation.augment import augment_batch
from alseg_cli.segmentation.losses import (dmpls_loss, full_loss, mixed_pseudo_label, partial_ce,
                                           soft_dice_loss)

U = 4  # unannotated value (ACDC)


def _logits(seed, shape=(2, 4, 5, 6)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_pce_ignores_unannotated_pixels():
    logits = _logits(0)
    scrib = torch.full((2, 5, 6), U)
    scrib[0, 1, 2], scrib[1, 3, 4], scrib[1, 0, 0] = 1, 3, 0
    # literal: mean of -log softmax at the three annotated pixels
    lp = logits.log_softmax(1)
    expected = -(lp[0, 1, 1, 2] + lp[1, 3, 3, 4] + lp[1, 0, 0, 0]) / 3
    assert partial_ce(logits, scrib, U).item() == pytest.approx(expected.item(), rel=1e-6)
    # changing logits at unannotated pixels does not change the loss
    other = logits.clone()
    other[:, :, 4, :] += 10 * torch.randn(2, 4, 6)
    assert partial_ce(other, scrib, U).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_dice_literal():
    probs = _logits(1).softmax(1)
    target = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(2))
    vals = []
    for c in range(4):
        p, g = probs[:, c], (target == c).float()
        vals.append((2 * (p * g).sum() + 1e-5) / (p.sum() + g.sum() + 1e-5))
    assert soft_dice_loss(probs, target).item() == pytest.approx(1 - float(sum(vals) / 4), rel=1e-6)
    onehot = F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(onehot, target).item() == pytest.approx(0.0, abs=1e-6)


def test_full_loss_is_half_ce_plus_dice():
    logits = _logits(3)
    target = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(4))
    expected = 0.5 * (F.cross_entropy(logits, target) + soft_dice_loss(logits.softmax(1), target))
    assert full_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_pseudo_label_mixing_formula():
    p1 = torch.tensor([[0.7, 0.3]]).view(1, 2, 1, 1)
    p2 = torch.tensor([[0.1, 0.9]]).view(1, 2, 1, 1)
    # beta*0.7 + (1-beta)*0.1 > beta*0.3 + (1-beta)*0.9  <=>  beta > 0.8 / 1.2
    assert mixed_pseudo_label(p1, p2, 0.9).item() == 0
    assert mixed_pseudo_label(p1, p2, 0.6).item() == 1
    assert mixed_pseudo_label(p1, p2, 1.0).item() == 0 and mixed_pseudo_label(p1, p2, 0.0).item() == 1


def test_dmpls_loss_literal_and_pl_has_no_gradient():
    l1, l2 = _logits(5).requires_grad_(), _logits(6).requires_grad_()
    scrib = torch.randint(0, 5, (2, 5, 6), generator=torch.Generator().manual_seed(7))
    beta = 0.3
    p1, p2 = l1.softmax(1), l2.softmax(1)
    pl = (beta * p1 + (1 - beta) * p2).argmax(1).detach()
    expected = (0.5 * (F.cross_entropy(l1, scrib, ignore_index=U) + F.cross_entropy(l2, scrib, ignore_index=U))
                + 0.25 * (soft_dice_loss(p1, pl) + soft_dice_loss(p2, pl)))
    got = dmpls_loss(l1, l2, scrib, U, beta)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    got.backward()
    assert torch.isfinite(l1.grad).all() and l1.grad.abs().sum() > 0


def test_augment_seeded_label_values_and_fill():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 1, 16, 16, generator=g)
    lab = torch.randint(0, 4, (32, 16, 16), generator=g).to(torch.uint8)
    a1 = augment_batch(img, lab, torch.Generator().manual_seed(1), fill=U)
    a2 = augment_batch(img, lab, torch.Generator().manual_seed(1), fill=U)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert set(a1[1].unique().tolist()) <= {0, 1, 2, 3, U}      # nearest: no new label values
    assert not torch.equal(a1[1], lab)                           # something was augmented
    # rot90/flip branches keep the label histogram of a sample; rotations only add fill outside
    changed = [i for i in range(32) if not torch.equal(a1[1][i], lab[i])]
    for i in changed:
        same_hist = torch.equal(torch.bincount(a1[1][i].flatten().long(), minlength=5)[:4],
                                torch.bincount(lab[i].flatten().long(), minlength=5)[:4])
        assert same_hist or (a1[1][i] == U).any()
