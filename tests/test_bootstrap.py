"""bootstrap_error against a literal implementation of appendix D, pairing and hand cases."""
from __future__ import annotations

import numpy as np
import pytest

from alseg_cli import bootstrap_error
from alseg_cli.errors import AlsegError
from alseg_cli.metrics.bootstrap import bootstrap_means, resample_indices


def literal_bootstrap(scores, n_boot, seed):
    """Appendix D spelled out with loops: resample volumes, mean over runs, 2 x sample std."""
    scores = np.asarray(scores, dtype=float)
    runs, n = scores.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n), dtype=np.int64)
    means = []
    for b in range(n_boot):
        per_run = []
        for r in range(runs):
            total = 0.0
            for j in idx[b]:
                total += scores[r, j]
            per_run.append(total / n)
        means.append(sum(per_run) / runs)
    m = sum(means) / n_boot
    var = sum((x - m) ** 2 for x in means) / (n_boot - 1)
    return scores.mean(), 2 * var ** 0.5


def test_matches_literal_loop():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.3, 0.9, size=(3, 7))
    mean, err = bootstrap_error(scores, n_boot=200, seed=5)
    ref_mean, ref_err = literal_bootstrap(scores, 200, 5)
    assert mean == pytest.approx(ref_mean, abs=1e-12)
    assert err == pytest.approx(ref_err, rel=1e-10)
    assert err > 0


def test_paired_indices_depend_only_on_seed_and_units():
    a = resample_indices(10, 50, seed=1)
    b = resample_indices(10, 50, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, resample_indices(10, 50, seed=2))
    assert a.min() >= 0 and a.max() < 10
    # two methods on the same test set: the difference of their bootstrap means is the
    # bootstrap of the difference, which holds only if both used identical resamples
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(2, 10)), rng.uniform(size=(2, 10))
    diff = bootstrap_means(x, 50, seed=1) - bootstrap_means(y, 50, seed=1)
    assert np.allclose(diff, bootstrap_means(x - y, 50, seed=1))


def test_hand_cases():
    # constant scores: every resample has the same mean, error 0
    mean, err = bootstrap_error(np.full((2, 5), 0.7), n_boot=100)
    assert mean == pytest.approx(0.7) and err == pytest.approx(0.0, abs=1e-12)
    # one volume: resamples cannot vary; mean over runs 0.5
    mean, err = bootstrap_error([[0.2], [0.8]], n_boot=10)
    assert mean == pytest.approx(0.5) and err == pytest.approx(0.0, abs=1e-12)
    # two volumes with scores 0 and 1: each resample mean is (number of 1s drawn) / 2
    idx = resample_indices(2, 20, seed=4)
    by_hand = idx.sum(axis=1) / 2.0
    _, err = bootstrap_error([[0.0, 1.0]], n_boot=20, seed=4)
    assert err == pytest.approx(2 * np.std(by_hand, ddof=1))


def test_bad_inputs():
    with pytest.raises(AlsegError):
        bootstrap_error([[0.1, np.nan]])
    with pytest.raises(AlsegError):
        bootstrap_error(np.zeros((2, 2, 2)))
    with pytest.raises(AlsegError):
        bootstrap_error(np.zeros((2, 0)))
    with pytest.raises(AlsegError):
        bootstrap_error([[0.1, 0.2]], n_boot=1)
