"""Prep on the real data in ../shared/data (skipped when absent): counts match the data README.

The fast tests list the sources and read headers only; the slow ones write whole stores.
"""
import json

import numpy as np
import pytest

from alseg_cli.io.layouts import list_source
from alseg_cli.io.readers import header
from alseg_cli.prep import detect_slice_axis, run_prep
from alseg_cli.store import DatasetStore

from conftest import ACDC_DIR, HIPPO_DIR, need_dir

pytestmark = pytest.mark.realdata


def _count(source):
    layout, listing = list_source(source, {})
    heads = [header(s.images[0]) for s in listing.specs]
    axis, _ = detect_slice_axis([h[0] for h in heads], [h[1] for h in heads])
    return layout, listing, axis, sum(h[0][axis] for h in heads)


def test_acdc_listing_counts():
    layout, listing, axis, slices = _count(need_dir(ACDC_DIR))
    assert layout == "acdc" and not listing.problems
    assert len(listing.specs) == 160 and len({s.patient for s in listing.specs}) == 80
    assert all(s.scribble is not None for s in listing.specs)
    assert axis == 2 and slices == 1454


def test_hippocampus_listing_counts_last_axis():
    layout, listing, axis, slices = _count(need_dir(HIPPO_DIR))
    assert layout == "msd" and not listing.problems and len(listing.specs) == 260
    assert axis == 2 and slices == 9270


@pytest.mark.slow
def test_acdc_prep_store(tmp_path):
    src = need_dir(ACDC_DIR)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({f"patient{i:03d}": "train" if i <= 60 else "val" if i <= 70 else "test"
                                 for i in range(1, 81)}))
    m = run_prep(src, tmp_path / "acdc.zarr", size=32, split_file=split)
    ds = DatasetStore(tmp_path / "acdc.zarr")
    assert m["num_volumes"] == 160 and len(ds) == 1454 and m["splits"]["train"] == 1114
    assert ds.num_classes == 4 and ds.unannotated == 4
    assert set(np.unique(ds.scribbles())) <= {0, 1, 2, 3, 4}


@pytest.mark.slow
def test_hippocampus_prep_store(tmp_path):
    m = run_prep(need_dir(HIPPO_DIR), tmp_path / "hip.zarr", size=16)
    assert m["num_volumes"] == 260 and m["num_slices"] == 9270 and m["slice_axis"] == 2
    assert m["num_classes"] == 3 and not m["has_scribbles"]
