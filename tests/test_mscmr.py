"""MS-CMR as released (CycleMix): labels per volume (scribbles on train, masks on val/test),
the release's split, MS-CMRSeg label values, and what each command does with the mix."""
import json

import nibabel as nib
import numpy as np
import pytest

from alseg_cli.api import evaluate, prep, train_seg
from alseg_cli.errors import AlsegError
from alseg_cli.store import DatasetStore

SHAPE = (20, 18, 4)
UNANNOTATED = 4


def _save(path, arr):
    img = nib.Nifti1Image(np.asarray(arr), np.diag([1.25, 1.25, 10.0, 1.0]))
    nib.save(img, str(path))


def _heart(rng):
    """MS-CMRSeg values: 600 RV, 200 myocardium, 500 LV (distinct, non-overlapping boxes)."""
    lab = np.zeros(SHAPE, np.int16)
    lab[2:6, 3:9] = 600
    lab[8:14, 4:12] = 200
    lab[10:12, 6:10] = 500
    img = rng.random(SHAPE).astype(np.float32) * 50 + lab * 0.5
    return img, lab


def _scribble(lab):
    s = np.full(SHAPE, UNANNOTATED, np.int16)
    for value, cls in ((600, 1), (200, 2), (500, 3), (0, 0)):
        where = np.argwhere(lab == value)
        s[tuple(where[:: max(1, len(where) // 6)].T)] = cls       # a few strokes per class
    return s


def make_mscmr(root, scribble=_scribble):
    rng = np.random.default_rng(0)
    layout = {"train": [2, 4, 6, 7], "val": [1], "TestSet": [3, 5]}
    for folder, subjects in layout.items():
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "labels").mkdir()
        for s in subjects:
            img, lab = _heart(rng)
            _save(root / folder / "images" / f"subject{s}_DE.nii.gz", img)
            if folder == "train":
                _save(root / folder / "labels" / f"subject{s}_DE_scribble.nii.gz", scribble(lab))
            else:
                _save(root / folder / "labels" / f"subject{s}_DE_manual.nii.gz", lab)
    return root


@pytest.fixture(scope="module")
def mscmr_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mscmr")
    src = make_mscmr(root / "MSCMR_dataset")
    prep(src, root / "ms.zarr", size=16, progress=False)
    return root / "ms.zarr"


def test_prep_keeps_the_release_split_and_per_volume_labels(mscmr_store):
    m = json.loads((mscmr_store.parent / "ms.zarr.manifest.json").read_text())
    assert m["layout"] == "mscmr" and m["split_patients"] == {"test": 2, "train": 4, "val": 1}
    assert m["labelled_slices"] == {"masks": {"test": 8, "train": 0, "val": 4},
                                    "scribbles": {"test": 0, "train": 16, "val": 0}}
    store = DatasetStore(mscmr_store)
    assert store.attrs["preprocessing"]["split"] == "layout"
    split_of = {v["name"]: s for v, s in zip(store.volume_info, [None] * 7)}
    for i in range(len(store)):
        split_of[store.volumes[i]] = store.split[i]
    assert split_of["subject3_DE"] == "test" and split_of["subject1_DE"] == "val"
    assert split_of["subject2_DE"] == "train"
    masks, scribbles = store.available("masks"), store.available("scribbles")
    assert np.array_equal(masks, store.split != "train") and np.array_equal(scribbles, store.split == "train")
    info = {v["name"]: v for v in store.volume_info}
    assert not info["subject2_DE"]["native"] and info["subject3_DE"]["native"]
    # MS-CMRSeg values -> ACDC's order: 600 RV -> 1, 200 myocardium -> 2, 500 LV -> 3
    native = store.native_mask(info["subject3_DE"]["index"])          # (Z, H, W), z first
    assert native[0, 3, 4] == 1 and native[0, 9, 5] == 2 and native[0, 11, 7] == 3
    assert set(np.unique(native)) == {0, 1, 2, 3}
    assert store.attrs["classes"] == {"0": "background", "1": "RV", "2": "myocardium", "3": "LV"}
    # the filler of a volume without scribbles is the unannotated value, never a class
    assert (store.scribbles(np.flatnonzero(~scribbles)) == UNANNOTATED).all()


def test_scribble_training_uses_what_has_scribbles_and_evaluates_on_masks(mscmr_store, tmp_path):
    model = train_seg(mscmr_store, "all", tmp_path / "m", model="dmpls", supervision="scribble",
                      iterations=2, val_every=1, base_channels=4, progress=False)
    assert model["args"]["labeled_count"] == 16
    res = evaluate(mscmr_store, tmp_path / "m", split="test", progress=False)
    assert sorted(r["volume"] for r in res["per_volume"]) == ["subject3_DE", "subject5_DE"]
    with pytest.raises(AlsegError, match=r"4 volume\(s\) of split 'train' have no mask"):
        evaluate(mscmr_store, tmp_path / "m", split="train", progress=False)


def test_labels_that_a_slice_lacks_are_one_line_errors(mscmr_store, tmp_path):
    with pytest.raises(AlsegError, match="none of the 16 labelled slice"):
        train_seg(mscmr_store, "all", tmp_path / "full", supervision="full", iterations=1, progress=False)
    assert not (tmp_path / "full").exists()
    store = DatasetStore(mscmr_store)
    ids = store.slice_ids[store.indices("train")][:3].tolist()
    with pytest.raises(AlsegError, match="have no mask|has a mask"):
        train_seg(mscmr_store, ids, tmp_path / "full2", supervision="full", iterations=1, progress=False)
    with pytest.raises(AlsegError, match="no slice of the 'train' split has a mask"):
        train_seg(mscmr_store, "all", tmp_path / "v", supervision="scribble", val_split="train",
                  iterations=1, progress=False)


def test_unknown_values_and_a_wrong_unannotated_value_are_refused(tmp_path):
    src = make_mscmr(tmp_path / "a")
    bad = tmp_path / "a" / "val" / "labels" / "subject1_DE_manual.nii.gz"
    lab = np.asarray(nib.load(str(bad)).dataobj).copy()
    lab[0, 0, 0] = 700
    _save(bad, lab)
    with pytest.raises(AlsegError, match="subject1_DE_manual.nii.gz: label value 255 is out of range|"
                                         "subject1_DE_manual.nii.gz: label value 700"):
        prep(src, tmp_path / "a.zarr", size=16, progress=False)
    assert not (tmp_path / "a.zarr").exists()

    def zero_background(lab):          # 0 = not annotated, strokes 1..3 only
        s = _scribble(lab)
        s[s == 0] = 1
        s[s == UNANNOTATED] = 0
        return s
    src = make_mscmr(tmp_path / "b", scribble=zero_background)
    with pytest.raises(AlsegError, match=r"of the scribble is value 0, but the unannotated value is 4; "
                                         r"pass --unannotated 0"):
        prep(src, tmp_path / "b.zarr", size=16, progress=False)
    m = prep(src, tmp_path / "b.zarr", size=16, unannotated=0, progress=False)
    assert m["unannotated"] == 0


def test_a_release_split_can_be_overridden(tmp_path):
    src = make_mscmr(tmp_path / "c")
    m = prep(src, tmp_path / "c.zarr", size=16, split="train=1", progress=False)
    assert m["split_patients"] == {"train": 7}


def test_a_one_head_unet_on_scribbles_ignores_the_unannotated_pixels(mscmr_store, tmp_path):
    m = train_seg(mscmr_store, "all", tmp_path / "u", model="unet", supervision="scribble", iterations=2,
                  val_every=2, base_channels=4, progress=False)
    # (the full-mask loss would index class 4, the unannotated value, and fail)
    curve = json.loads((tmp_path / "u" / m["members"][0]["dir"] / "curve.json").read_text())
    assert m["args"]["supervision"] == "scribble" and all(np.isfinite(c["loss"]) for c in curve)
