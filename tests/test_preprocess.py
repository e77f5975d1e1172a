"""The paper's preprocessing: in-plane resampling to a spacing, centre crop/pad, z-score and
CT windows; each recorded in the store, and predictions mapped back to the native grid."""
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from alseg_cli.api import evaluate, prep, train_seg
from alseg_cli.cli.main import app
from alseg_cli.data.geometry import forward_labels, plan, to_native
from alseg_cli.data.normalize import apply_scheme
from alseg_cli.errors import AlsegError
from alseg_cli.metrics.dice import dice_per_class
from alseg_cli.segmentation.evaluate import from_source_orientation
from alseg_cli.store import DatasetStore

runner = CliRunner()


def _labels(shape, rng):
    lab = np.zeros(shape, np.uint8)
    lab[6:14, 5:11] = 1
    lab[9:12, 7:9] = 2
    lab[..., 0] = 0                      # an empty slice too
    return lab


def make_folder(root, n=4, shape=(20, 16, 3), zooms=(0.8, 0.8, 5.0)):
    rng = np.random.default_rng(3)
    (root / "img").mkdir(parents=True)
    (root / "lab").mkdir()
    for i in range(n):
        lab = _labels(shape, rng)
        img = rng.normal(100, 20, shape).astype(np.float32) + 300.0 * lab
        for arr, path in ((img, root / "img" / f"case{i}.nii.gz"), (lab, root / "lab" / f"case{i}.nii.gz")):
            out = nib.Nifti1Image(arr, np.diag(list(zooms) + [1.0]))
            out.header.set_zooms(zooms)
            nib.save(out, str(path))
    return root


@pytest.mark.parametrize("native,spacing,target,crop", [
    ((20, 16), (0.8, 0.8), 0.4, 28),      # upsampled x2, then cropped in one axis and padded in the other
    ((20, 16), (1.0, 1.0), None, 12),     # crop only
    ((15, 9), (1.0, 1.0), None, 24),      # pad only, odd sizes
])
def test_labels_survive_resampling_and_crop_round_trip_exactly(native, spacing, target, crop):
    lab = np.zeros((2,) + native, np.uint8)
    lab[:, 5:11, 3:7] = 1                 # inside every crop window
    lab[1, 6:8, 4:6] = 2
    geom = plan(native, spacing, target, crop)
    small = forward_labels(lab, geom)
    assert small.shape == (2, crop, crop)
    back = to_native(small, geom, native)
    assert np.array_equal(back, lab)


def test_crop_keeps_the_centre_and_pads_with_background():
    lab = np.arange(1, 7 * 5 + 1, dtype=np.uint8).reshape(1, 7, 5)
    geom = plan((7, 5), None, None, 3)
    assert geom["offset"] == [2, 1]
    assert np.array_equal(forward_labels(lab, geom)[0], lab[0, 2:5, 1:4])
    padded = forward_labels(lab, plan((7, 5), None, None, 9))[0]
    assert padded.shape == (9, 9) and padded[0].max() == 0 and np.array_equal(padded[1:8, 2:7], lab[0])


def test_intensity_schemes_against_literal_formulas():
    rng = np.random.default_rng(0)
    img = rng.normal(40, 300, (3, 2, 8, 8)).astype(np.float32)
    z = apply_scheme(img, "zscore")
    for c in range(2):
        ch = img[:, c].astype(np.float64)
        np.testing.assert_allclose(z[:, c], (ch - ch.mean()) / ch.std(), rtol=1e-5, atol=1e-5)
    w = apply_scheme(img, "window", (-160.0, 240.0))
    np.testing.assert_allclose(w, (np.clip(img, -160, 240) + 160) / 400, atol=1e-6)
    clipped = apply_scheme(img, "none", (-160.0, 240.0))
    assert clipped.min() >= -160 and clipped.max() <= 240


@pytest.fixture(scope="module")
def cropped_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    src = make_folder(root / "src")
    # working size = crop: the store's masks are then the forward map alone, exactly invertible
    prep(None, root / "c.zarr", images=src / "img", masks=src / "lab", size=28, spacing=0.4, crop=28,
         normalize="zscore", split="train=0.5,val=0.25,test=0.25", progress=False)
    return root / "c.zarr"


def test_store_records_the_preprocessing_and_maps_back_to_native_masks(cropped_store):
    store = DatasetStore(cropped_store)
    pre = store.attrs["preprocessing"]
    assert pre["spacing"] == 0.4 and pre["crop"] == 28 and pre["normalize_scheme"] == "zscore"
    for vi in store.volume_info:
        geom = vi["geometry"]
        assert geom["native"] == [20, 16] and geom["resampled"] == [40, 32] and geom["size"] == [28, 28]
        assert vi["shape"] == [3, 20, 16] and vi["spacing"] == pytest.approx([5.0, 0.8, 0.8])
        idx = store.volume_slices(vi["name"])
        back = to_native(store.masks(idx), geom, vi["shape"][1:])      # 28 -> 40x32 -> 20x16
        native = store.native_mask(vi["index"])
        assert np.array_equal(back, native)                            # native Dice exactly 1
        assert dice_per_class(back, native, [1, 2]).tolist() == [1.0, 1.0]


def test_evaluate_scores_against_the_native_masks(cropped_store, tmp_path):
    train_seg(cropped_store, "all", tmp_path / "m", iterations=4, val_every=2, base_channels=4, progress=False)
    res = evaluate(cropped_store, tmp_path / "m", predictions=tmp_path / "pred", progress=False)
    store = DatasetStore(cropped_store)
    info = {v["name"]: v for v in store.volume_info}
    for row in res["per_volume"]:
        vi = info[row["volume"]]
        pred = from_source_orientation(np.asarray(nib.load(str(tmp_path / "pred" / f"{row['volume']}.nii.gz"))
                                                  .dataobj), vi["slice_axis"])
        native = store.native_mask(vi["index"])
        assert pred.shape == native.shape == (3, 20, 16)
        np.testing.assert_allclose(row["dice"], dice_per_class(pred, native, [1, 2]))


def test_bad_preprocessing_options_are_one_line_errors(tmp_path):
    src = make_folder(tmp_path / "src", n=2)
    kw = dict(images=src / "img", masks=src / "lab", size=16, split="train=1", progress=False)
    for opts, msg in (({"window": "240,-160"}, "HI must be above LO"), ({"window": "a,b"}, "expected LO,HI"),
                      ({"normalize": "window"}, "needs --window"), ({"normalize": "minmax"}, "choose one of"),
                      ({"spacing": -1.0}, "must be positive"), ({"crop": 4}, "at least 8"),
                      ({"label_map": "200:1"}, "FROM=TO")):
        with pytest.raises(AlsegError, match=msg):
            prep(None, tmp_path / "bad.zarr", **kw, **opts)
        assert not (tmp_path / "bad.zarr").exists()


def test_cli_help_names_the_layouts_and_the_preprocessing(tmp_path):
    out = runner.invoke(app, ["prep", "--help"], terminal_width=200).output
    for word in ("CHAOS", "MS-CMR", "--spacing", "--crop", "--normalize", "--window", "--label-map"):
        assert word in out
    src = make_folder(tmp_path / "src", n=2)
    res = runner.invoke(app, ["prep", "--images", str(src / "img"), "--masks", str(src / "lab"), "-o",
                              str(tmp_path / "w.zarr"), "--size", "16", "--window", "0,400", "--crop", "16",
                              "--split-fractions", "train=1"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])
    pre = DatasetStore(tmp_path / "w.zarr").attrs["preprocessing"]
    assert m["kind"] == "dataset" and pre["window"] == [0.0, 400.0] and pre["normalize_scheme"] == "window"
