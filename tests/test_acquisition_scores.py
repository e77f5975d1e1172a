"""Per-pixel uncertainty scores against hand-computed values and literal loops; budgets."""
import math

import numpy as np
import pytest
import torch

from alseg_cli.acquisition.budget import parse_budget
from alseg_cli.acquisition.scores import (bald, entropy, mc_variance, reduce_pixels,
                                          variance_ratio)
from alseg_cli.errors import AlsegError


def probs_of(*samples):
    """samples: per-pass class vectors for one pixel -> (S, 1, K, 1, 1)."""
    return torch.tensor(samples, dtype=torch.float32)[:, None, :, None, None]


def test_hand_computed_values():
    assert entropy(probs_of([0.5, 0.5]))[0, 0, 0] == pytest.approx(math.log(2))
    assert entropy(probs_of([1.0, 0.0]))[0, 0, 0] == 0.0
    # two confident passes that disagree: all the uncertainty is epistemic
    assert bald(probs_of([1.0, 0.0], [0.0, 1.0]))[0, 0, 0] == pytest.approx(math.log(2))
    assert bald(probs_of([0.5, 0.5], [0.5, 0.5]))[0, 0, 0] == pytest.approx(0.0, abs=1e-7)
    assert mc_variance(probs_of([1.0, 0.0], [0.0, 1.0]))[0, 0, 0] == pytest.approx(0.25)
    # votes 0, 0, 1, 2 over 4 members: modal class has 2 votes -> 1 - 2/4
    v = variance_ratio(probs_of([.9, .05, .05], [.6, .3, .1], [.2, .7, .1], [.1, .2, .7]))
    assert v[0, 0, 0] == pytest.approx(0.5)
    assert variance_ratio(probs_of([.9, .1], [.8, .2]))[0, 0, 0] == 0.0


def _literal(p):
    """Slow per-pixel loops in float64 for (S, b, K, H, W)."""
    p = p.double().numpy()
    s, b, k, h, w = p.shape
    out = {n: np.zeros((b, h, w)) for n in ("ent", "bald", "var", "vr")}
    for i in range(b):
        for y in range(h):
            for x in range(w):
                ps = p[:, i, :, y, x]
                mean = ps.mean(0)
                ent = -sum(q * math.log(q) for q in mean if q > 0)
                each = [-sum(q * math.log(q) for q in row if q > 0) for row in ps]
                out["ent"][i, y, x] = ent
                out["bald"][i, y, x] = ent - sum(each) / s
                out["var"][i, y, x] = np.mean([np.mean((ps[:, c] - mean[c]) ** 2) for c in range(k)])
                votes = [int(np.argmax(row)) for row in ps]
                out["vr"][i, y, x] = 1 - max(votes.count(c) for c in range(k)) / s
    return out


def test_against_literal_loops():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 2, 4, 3, 3, generator=g) * 3, dim=2)
    ref = _literal(p)
    torch.testing.assert_close(entropy(p).double(), torch.from_numpy(ref["ent"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(bald(p).double(), torch.from_numpy(ref["bald"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(mc_variance(p).double(), torch.from_numpy(ref["var"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(variance_ratio(p).double(), torch.from_numpy(ref["vr"]), atol=1e-7, rtol=0)
    assert (bald(p) >= -1e-6).all()


def test_reductions():
    s = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 4.0]]])
    assert reduce_pixels(s, "mean").tolist() == [3.0, 1.0]
    assert reduce_pixels(s, "max").tolist() == [6.0, 4.0]
    assert reduce_pixels(s, "sum").tolist() == [12.0, 4.0]
    with pytest.raises(AlsegError, match="--reduce"):
        reduce_pixels(s, "median")


def test_budget_parsing_matches_paper_counts():
    # ACDC pool of 1,454 (method.md section 1)
    for pct, count in {"1%": 14, "2%": 29, "3%": 43, "4%": 58, "5%": 72, "10%": 145, "15%": 218,
                       "20%": 290, "40%": 581}.items():
        assert parse_budget(pct, None, 1454, 0) == (count, count)
    assert parse_budget("3%", None, 1454, 29) == (43, 14)
    assert parse_budget("0.5%", None, 1000, 0) == (5, 5)
    assert parse_budget("45", None, 1454, 40) == (45, 5)
    assert parse_budget(None, 10, 1454, 40) == (50, 10)


@pytest.mark.parametrize("budget,add,pool,lab,match", [
    ("2%", None, 1454, 29, "already met"), ("2000", None, 1454, 0, "larger than the pool"),
    ("abc", None, 10, 0, "expected a percentage"), ("0%", None, 10, 0, "expected"),
    (None, None, 10, 0, "give a budget"), ("3%", 2, 10, 0, "not both"), (None, 0, 10, 0, "positive"),
    (None, 5, 10, 8, "larger than the pool"),
])
def test_budget_errors_say_the_numbers(budget, add, pool, lab, match):
    with pytest.raises(AlsegError, match=match):
        parse_budget(budget, add, pool, lab)
