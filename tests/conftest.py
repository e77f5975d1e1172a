"""Shared fixtures: a small phantom dataset store made in code, real-data paths."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models on tiny images: one thread is fastest and leaves cores for subprocess tests.
torch.set_num_threads(1)
# CLI subprocesses print UTF-8 (Rich tables, ±) whatever the machine's locale is.
os.environ.setdefault("PYTHONUTF8", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ACDC_DIR = Path(os.environ.get("ACDC_DIR", SHARED_DATA / "acdc"))
HIPPO_DIR = Path(os.environ.get("HIPPO_DIR", SHARED_DATA / "hippocampus"))


@pytest.fixture(scope="session")
def phantom_store(tmp_path_factory) -> Path:
    """12 patients x 2 frames, 64 px, ~8 slices: train/val/test by patient."""
    from alseg_cli.prep import write_phantom_store

    path = tmp_path_factory.mktemp("phantoms") / "data.zarr"
    write_phantom_store(path, patients=12, size=64, slices=8, seed=0)
    return path


def need_dir(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path}; skipping")
    return path
