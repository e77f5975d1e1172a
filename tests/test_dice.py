"""Dice and HD95 against hand-computed values and literal slow implementations."""
import itertools
import math

import numpy as np
import pytest
import torch

from alseg_cli import dice_per_class
from alseg_cli.metrics.hd95 import hd95, hd95_max, hd95_per_class


def test_dice_hand_computed():
    pred = np.array([[1, 1, 0], [2, 2, 0]])
    mask = np.array([[1, 0, 0], [2, 2, 2]])
    # class 1: |P|=2 |G|=1 |P&G|=1 -> 2/3 ; class 2: |P|=2 |G|=3 |P&G|=2 -> 4/5
    np.testing.assert_allclose(dice_per_class(pred, mask, [1, 2]), [2 / 3, 4 / 5])


def test_dice_empty_cases():
    z = np.zeros((3, 4, 4), np.uint8)
    one = z.copy()
    one[1, 1, 1] = 1
    assert dice_per_class(z, z, [1]).tolist() == [1.0]        # both empty -> 1
    assert dice_per_class(one, z, [1]).tolist() == [0.0]      # only in prediction -> 0
    assert dice_per_class(z, one, [1]).tolist() == [0.0]      # only in mask -> 0


def test_dice_accepts_torch_and_rejects_shape_mismatch():
    a = torch.tensor([[1, 0], [1, 1]])
    np.testing.assert_allclose(dice_per_class(a, a, [0, 1]), [1.0, 1.0])
    with pytest.raises(ValueError):
        dice_per_class(np.zeros((2, 2)), np.zeros((2, 3)), [1])


def _slow_surface(a):
    """Voxels of ``a`` with a face neighbour outside ``a`` (or outside the array)."""
    out = np.zeros_like(a)
    for idx in itertools.product(*[range(s) for s in a.shape]):
        if not a[idx]:
            continue
        for d in range(a.ndim):
            for step in (-1, 1):
                n = list(idx)
                n[d] += step
                if n[d] < 0 or n[d] >= a.shape[d] or not a[tuple(n)]:
                    out[idx] = True
    return out


def _directed(a, b, spacing):
    pa = np.argwhere(_slow_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(_slow_surface(b)) * np.asarray(spacing)
    return [min(np.sqrt(((p - q) ** 2).sum()) for q in pb) for p in pa]


def _slow_hd95_pooled(a, b, spacing):
    """medpy binary.hd95: one percentile of hstack((d_ab, d_ba))."""
    return np.percentile(np.hstack((_directed(a, b, spacing), _directed(b, a, spacing))), 95)


def _slow_hd95_max(a, b, spacing):
    """MONAI: max of the two directed percentiles."""
    return max(np.percentile(_directed(a, b, spacing), 95), np.percentile(_directed(b, a, spacing), 95))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 1.5, 0.7)])
def test_hd95_matches_literal_implementations(spacing):
    g = np.random.default_rng(0)
    a = np.zeros((5, 12, 12), bool)
    b = np.zeros((5, 12, 12), bool)
    a[1:4, 2:8, 3:9] = True
    b[1:5, 4:10, 2:7] = True
    a &= g.random(a.shape) < 0.9
    assert hd95(a, b, spacing) == pytest.approx(_slow_hd95_pooled(a, b, spacing))
    assert hd95_max(a, b, spacing) == pytest.approx(_slow_hd95_max(a, b, spacing))
    assert hd95(a, b, spacing) <= hd95_max(a, b, spacing)


def test_pooled_and_directed_hd95_differ_where_one_side_is_far():
    # a: 40 voxels in a row; b: the same row plus 3 lone voxels 10 px away. b -> a has 3 of 43
    # distances at 10 (7 %, above the 5 % tail); pooled over 83 distances they are 3.6 %.
    a = np.zeros((1, 11, 40), bool)
    a[0, 0, :] = True
    b = a.copy()
    b[0, 10, [0, 5, 10]] = True
    d_ab, d_ba = [0.0] * 40, [0.0] * 40 + [10.0] * 3
    assert hd95(a, b) == pytest.approx(np.percentile(d_ab + d_ba, 95)) == 0.0
    assert hd95_max(a, b) == pytest.approx(np.percentile(d_ba, 95))
    assert hd95_max(a, b) > 1.0


def test_hd95_hand_computed_and_empty():
    a = np.zeros((1, 1, 10), bool)
    b = np.zeros((1, 1, 10), bool)
    a[0, 0, 2] = True
    b[0, 0, 6] = True
    assert hd95(a, b) == pytest.approx(4.0)                     # pixels
    assert hd95(a, b, (1, 1, 0.5)) == pytest.approx(2.0)        # mm along x
    assert hd95(a, a) == 0.0
    assert math.isnan(hd95(a, np.zeros_like(a)))                 # one empty -> NaN
    assert math.isnan(hd95(np.zeros_like(a), np.zeros_like(a)))  # both empty -> NaN
    labels = a.astype(np.uint8)
    pooled, directed = hd95_per_class(labels, labels, [1, 2])
    assert pooled[0] == 0.0 and math.isnan(pooled[1])
    assert directed[0] == 0.0 and math.isnan(directed[1])
