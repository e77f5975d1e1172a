"""Per-volume intensity normalisation, one registry entry per scheme.

``percentile`` (default): clip at the 0.5/99.5 percentiles, scale to [0, 1], per volume and
channel, because scanners and sequences differ in gain (the MSD Hippocampus maxima range from
~100 to 1.7e6) and a few hot voxels must not squash the useful range. ``zscore``: zero mean,
unit variance per volume and channel (the paper's MS-CMR and CHAOS preprocessing). ``window``:
a CT window LO,HI mapped to [0, 1] (``--window``; values outside are clipped). ``none``: raw.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import AlsegError

LOW, HIGH = 0.5, 99.5
SCHEMES = {"percentile": "percentile 0.5/99.5 -> [0,1]", "zscore": "z-score per volume and channel",
           "window": "window -> [0,1]", "none": None}


def _per_channel(image: np.ndarray, fn) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"expected (Z, C, H, W), got shape {image.shape}")
    out = np.empty_like(image)
    for c in range(image.shape[1]):
        out[:, c] = fn(image[:, c])
    return out


def normalize_volume(image: np.ndarray, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """(Z, C, H, W) -> float32 in [0, 1], each channel clipped at its own percentiles.

    A constant channel (no range) becomes all zeros rather than dividing by zero.
    """
    def one(chan):
        lo, hi = np.percentile(chan, [low, high])
        if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
            return np.zeros_like(chan)
        return (np.clip(chan, lo, hi) - lo) / (hi - lo)
    return _per_channel(image, one)


def zscore_volume(image: np.ndarray) -> np.ndarray:
    """(Z, C, H, W) -> zero mean, unit variance per channel (float64 statistics); a constant
    channel becomes zeros."""
    def one(chan):
        mean, std = float(chan.mean(dtype=np.float64)), float(chan.std(dtype=np.float64))
        return np.zeros_like(chan) if not std > 0 else (chan - mean) / std
    return _per_channel(image, one)


def window_volume(image: np.ndarray, window: Sequence[float]) -> np.ndarray:
    lo, hi = float(window[0]), float(window[1])
    return _per_channel(image, lambda chan: (np.clip(chan, lo, hi) - lo) / (hi - lo))


def parse_window(text: Optional[str]):
    """``--window -160,240`` -> (-160.0, 240.0)."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise AlsegError(f"--window {text}: expected LO,HI, e.g. -160,240") from None
    if not hi > lo:
        raise AlsegError(f"--window {text}: HI must be above LO")
    return lo, hi


def resolve_scheme(normalize: Optional[str], window) -> str:
    """The scheme to apply: the one asked for, else ``window`` with --window, else percentile."""
    scheme = normalize or ("window" if window is not None else "percentile")
    if scheme not in SCHEMES:
        raise AlsegError(f"--normalize {scheme}: choose one of {', '.join(SCHEMES)}")
    if scheme == "window" and window is None:
        raise AlsegError("--normalize window needs --window LO,HI")
    return scheme


def apply_scheme(image: np.ndarray, scheme: str, window=None) -> np.ndarray:
    """Clip to ``window`` (when given), then normalise by ``scheme``."""
    if scheme == "window":
        return window_volume(image, window)
    if window is not None:
        image = np.clip(image, window[0], window[1])
    if scheme == "percentile":
        return normalize_volume(image)
    if scheme == "zscore":
        return zscore_volume(image)
    return np.asarray(image, dtype=np.float32)
