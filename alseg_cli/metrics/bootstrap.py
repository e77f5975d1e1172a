"""Bootstrap error bars over test units (method.md section 7, paper appendix D).

For a method at one budget the scores form a (runs, units) matrix: one row per seed, one
column per test volume (or per slice with ``--unit slice``). A bootstrap resample draws
``units`` column indices with replacement; its statistic is the mean over runs of the mean
over the drawn units. The error is 2 x the sample standard deviation (ddof=1) of the
``n_boot`` resampled statistics.

Pairing: the indices depend only on ``seed`` and the number of units, never on the scores,
so every method compared on one test set sees the very same resamples.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..errors import AlsegError


def resample_indices(n_units: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_units) int64 indices drawn with replacement, a function of (n_units, n_boot, seed)."""
    if n_units < 1:
        raise AlsegError("bootstrap needs at least one test unit (volume or slice), got 0")
    if n_boot < 2:
        raise AlsegError(f"n_boot={n_boot}: need at least 2 resamples for a standard deviation")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_units, size=(n_boot, n_units), dtype=np.int64)


def _as_matrix(scores, allow_nan: bool = False) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise AlsegError(f"bootstrap scores must be (runs, units); got shape {arr.shape}")
    if arr.size == 0:
        raise AlsegError(f"bootstrap scores are empty (shape {arr.shape})")
    if np.isinf(arr).any() or (not allow_nan and np.isnan(arr).any()):
        raise AlsegError("bootstrap scores contain NaN or inf; fix or drop those runs/volumes first")
    if np.isnan(arr).all():
        raise AlsegError("bootstrap scores are all undefined (NaN)")
    return arr


def bootstrap_means(scores, n_boot: int = 1000, seed: int = 0, allow_nan: bool = False) -> np.ndarray:
    """The ``n_boot`` resampled statistics (mean over runs of the mean over resampled units).

    ``allow_nan`` (HD95, undefined where a class is absent): a resample's statistic is the
    mean of its defined (run, unit) values; without NaN this is the same statistic.
    """
    arr = _as_matrix(scores, allow_nan)
    idx = resample_indices(arr.shape[1], n_boot, seed)
    if allow_nan and np.isnan(arr).any():
        defined = ~np.isnan(arr)
        sums, counts = np.where(defined, arr, 0.0).sum(axis=0), defined.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    # Mean over runs commutes with the mean over the drawn units, so average runs first:
    # the resample statistic is then a mean of per-unit averages (O(n_boot * units) work).
    per_unit = arr.mean(axis=0)
    return per_unit[idx].mean(axis=1)


def bootstrap_error(scores, n_boot: int = 1000, seed: int = 0, allow_nan: bool = False) -> Tuple[float, float]:
    """Return ``(mean, error)`` for a (runs, units) score matrix.

    ``mean`` is the plain mean over runs and units; ``error`` is 2 x the sample standard
    deviation with ddof=1 of the ``n_boot`` bootstrap means (appendix D). Resample indices
    come from ``numpy.random.default_rng(seed)`` and the number of units only (paired).
    A 1-D input is treated as one run.
    """
    arr = _as_matrix(scores, allow_nan)
    means = bootstrap_means(arr, n_boot=n_boot, seed=seed, allow_nan=allow_nan)
    means = means[~np.isnan(means)]          # a resample that drew only undefined units
    return float(np.nanmean(arr)), float(2.0 * means.std(ddof=1))
