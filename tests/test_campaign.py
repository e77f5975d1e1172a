"""A real annotation campaign through files only: prep an unlabelled pool, pick, export,
"annotate" label volumes as ITK-SNAP / Slicer would save them, import (a mirrored file refused,
a cropped one pasted back, scribbles on their own), train without a validation split, pick
again, predict on a scan never prepped."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from alseg_cli.errors import AlsegError

torch.set_num_threads(1)
AFFINE = np.array([[1.5, 0, 0, -20.0], [0, 1.5, 0, 8.0], [0, 0, 10.0, 3.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from alseg_cli.data.phantoms import make_phantoms
    from alseg_cli.prep import run_prep

    d = tmp_path_factory.mktemp("campaign")
    (d / "raw").mkdir()
    truth = {}
    for v in make_phantoms(patients=4, size=32, slices=6, seed=5):
        nib.save(nib.Nifti1Image(np.transpose(v.image[:, 0], (1, 2, 0)).astype(np.float32), AFFINE),
                 str(d / "raw" / f"{v.name}.nii.gz"))
        truth[v.name] = np.transpose(v.mask, (1, 2, 0))
    run_prep(None, d / "pool.zarr", size=32, split="train=1", images=d / "raw", classes="background,RV,MYO,LV")
    return d, truth


def _paint(export_dir, truth, only=None):
    """Fill the requested slices of each template with the truth; returns {volume: path}."""
    rows = list(csv.DictReader(open(export_dir / "tasks.csv")))
    out = {}
    for vol in sorted({r["volume"] for r in rows}):
        path = export_dir / f"labels/{vol}.nii.gz"
        tpl = nib.load(str(path))
        arr = np.asarray(tpl.dataobj).copy()
        for r in rows:
            if r["volume"] == vol:
                k = int(r["index0"])
                arr[:, :, k] = truth[vol][:, :, k]
        out[vol] = (arr, tpl.affine)
    return rows, out


def test_two_rounds_through_files(campaign, tmp_path):
    from alseg_cli.acquisition.select import select
    from alseg_cli.campaign.export import export_selection
    from alseg_cli.campaign.importer import import_labels
    from alseg_cli.campaign.predict import predict_files
    from alseg_cli.segmentation.train import train_seg
    from alseg_cli.store import DatasetStore

    d, truth = campaign
    pool = d / "pool.zarr"
    sel = tmp_path / "sel1.json"
    select(method="random", budget="15%", dataset=pool, seed=0, out=sel, device="cpu")
    export_selection(sel, tmp_path / "r1")
    rows, painted = _paint(tmp_path / "r1", truth)
    files = []
    vols = sorted(painted)
    for i, vol in enumerate(vols):
        arr, aff = painted[vol]
        path = tmp_path / "r1" / "labels" / f"{vol}.nii.gz"
        if i == 0:               # Slicer-style: cropped to the labelled extent, origin moved
            nz = np.argwhere(arr > 0)
            lo, hi = nz.min(0), nz.max(0) + 1
            crop = arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            shifted = aff.copy()
            shifted[:3, 3] = aff[:3, 3] + aff[:3, :3] @ lo
            nib.save(nib.Nifti1Image(crop, shifted), str(path))
        else:
            nib.save(nib.Nifti1Image(arr, aff), str(path))
        files.append(path)
    # a mirrored copy of one file is refused, naming it, and the store is left as it was
    mirrored = tmp_path / "bad" / f"{vols[-1]}.nii.gz"
    mirrored.parent.mkdir()
    flip = AFFINE.copy()
    flip[0, 0] = -flip[0, 0]
    nib.save(nib.Nifti1Image(painted[vols[-1]][0], flip), str(mirrored))
    before = DatasetStore(pool).attrs["content_hash"]
    with pytest.raises(AlsegError, match="affine differs"):
        import_labels(pool, files + [mirrored], selection=sel, out=tmp_path / "lab1.json")
    assert DatasetStore(pool).attrs["content_hash"] == before and not DatasetStore(pool).has_masks
    bad_value = tmp_path / "bad" / f"{vols[1]}.nii.gz"
    nib.save(nib.Nifti1Image(np.full(painted[vols[1]][0].shape, 7, np.uint8), AFFINE), str(bad_value))
    with pytest.raises(AlsegError, match="not a declared class"):
        import_labels(pool, [bad_value], selection=sel, out=tmp_path / "lab1.json")

    lab1 = import_labels(pool, files[:-1], selection=sel, out=tmp_path / "lab1.json", annotator="dr. a")
    store = DatasetStore(pool)
    requested = json.loads(sel.read_text())["selected"]
    missing = [r["slice_id"] for r in rows if r["volume"] == vols[-1]]
    assert sorted(lab1["imported"]["requested_missing"]) == sorted(missing)      # that file never came
    assert set(lab1["labeled"]) == set(requested) - set(missing)
    have = store.available("masks")
    assert have.sum() == len(lab1["labeled"]) and store.attrs["annotations"][0]["annotator"] == "dr. a"
    for sid in lab1["labeled"]:                 # the cropped file came back at the right place
        i = store.index_of[sid]
        vol, z = sid.split(":")
        np.testing.assert_array_equal(store.masks([i])[0], truth[vol][:, :, int(z)])

    model = tmp_path / "m1"
    m = train_seg(pool, str(tmp_path / "lab1.json"), model, iterations=150, base_channels=8, lr=3e-3,
                  optimizer="adamw", class_weights="balanced", val_split="none", device="cpu", progress=False,
                  val_every=50, seed=0)
    assert m["validation"].startswith("none") and m["members"][0]["best_val_dice"] is None
    sel2 = select(method="random", budget="30%", dataset=pool, labeled=tmp_path / "lab1.json", seed=1,
                  device="cpu")
    assert not set(sel2["selected"]) & set(lab1["labeled"])
    assert len(sel2["labeled"]) == sel2["budget"]["resolved"]

    # scribbles for one new slice's volume: only the drawn voxels count
    vol, z = sel2["selected"][0].split(":")
    scr = np.full(truth[vol].shape, 4, np.uint8)
    scr[10:14, 10:14, int(z)] = truth[vol][10:14, 10:14, int(z)]
    scr[0:2, 0:2, int(z)] = 0
    sfile = tmp_path / "scr" / f"{vol}.nii.gz"
    sfile.parent.mkdir()
    nib.save(nib.Nifti1Image(scr, AFFINE), str(sfile))
    sel2_path = tmp_path / "sel2.json"
    sel2_path.write_text(json.dumps(sel2))
    lab2 = import_labels(pool, [sfile], selection=sel2_path, out=tmp_path / "lab2.json", kind="scribbles")
    assert lab2["imported"]["requested_arrived"] == 1 and DatasetStore(pool).has_scribbles

    # DMPLS trains from the scribbled slice alone
    dm = train_seg(pool, str(tmp_path / "lab2.json"), tmp_path / "dm", model="dmpls", supervision="scribble",
                   iterations=4, base_channels=4, val_split="none", device="cpu", progress=False)
    assert dm["validation"].startswith("none")

    # round 1's model predicts a scan never prepped (a new phantom): the input's header comes
    # back, and the labels find its structures
    from alseg_cli.data.phantoms import make_phantoms
    held = next(iter(make_phantoms(patients=1, size=32, slices=6, seed=99)))
    new = tmp_path / "new.nii.gz"
    img = nib.Nifti1Image(np.transpose(held.image[:, 0], (1, 2, 0)).astype(np.float32), AFFINE)
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=2)
    nib.save(img, str(new))
    predict_files(model, [new], tmp_path / "pred", device="cpu")
    out = nib.load(str(tmp_path / "pred" / "new.nii.gz"))
    assert out.shape == img.shape and np.allclose(out.get_qform(), img.get_qform())
    assert np.allclose(out.get_sform(), img.get_sform())
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
    pred, truth = np.asarray(out.dataobj), np.transpose(held.mask, (1, 2, 0))
    dice = [2 * ((pred == c) & (truth == c)).sum() / ((pred == c).sum() + (truth == c).sum()) for c in (1, 2, 3)]
    assert np.mean(dice) > 0.5, dice


def test_prep_refuses_mirrored_masks_and_keeps_an_unlabelled_pool_whole(tmp_path):
    from alseg_cli.prep import run_prep
    from alseg_cli.store import DatasetStore

    (tmp_path / "im").mkdir(), (tmp_path / "ma").mkdir()
    img = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    lab = np.zeros((16, 16, 4), np.uint8)
    lab[4:8, 4:8] = 1
    flip = AFFINE.copy()
    flip[0, 0] *= -1
    nib.save(nib.Nifti1Image(img, AFFINE), str(tmp_path / "im" / "p0.nii.gz"))
    nib.save(nib.Nifti1Image(lab, flip), str(tmp_path / "ma" / "p0_seg.nii.gz"))
    with pytest.raises(AlsegError, match="affine differs"):
        run_prep(None, tmp_path / "d.zarr", size=16, images=tmp_path / "im", masks=tmp_path / "ma",
                 classes="background,a")
    assert not (tmp_path / "d.zarr").exists()
    for i in range(1, 5):
        nib.save(nib.Nifti1Image(img, AFFINE), str(tmp_path / "im" / f"p{i}.nii.gz"))
    run_prep(None, tmp_path / "pool.zarr", size=16, images=tmp_path / "im", classes="background,a")
    store = DatasetStore(tmp_path / "pool.zarr")
    assert set(store.split.tolist()) == {"train"} and store.num_classes == 2     # nothing hidden in val/test
    from alseg_cli.segmentation.train import train_seg
    with pytest.raises(AlsegError, match="import-labels"):
        train_seg(tmp_path / "pool.zarr", "all", tmp_path / "m", progress=False)


def test_slice_pngs_go_out_and_come_back(tmp_path):
    from PIL import Image

    from alseg_cli.acquisition.select import select
    from alseg_cli.campaign.export import PALETTE, export_selection
    from alseg_cli.campaign.importer import import_labels
    from alseg_cli.data.phantoms import make_phantoms
    from alseg_cli.prep import run_prep
    from alseg_cli.store import DatasetStore

    (tmp_path / "raw").mkdir()
    truth = {}
    for v in make_phantoms(patients=2, size=24, slices=5, seed=6):
        nib.save(nib.Nifti1Image(np.transpose(v.image[:, 0], (1, 2, 0)).astype(np.float32), AFFINE),
                 str(tmp_path / "raw" / f"{v.name}.nii.gz"))
        truth[v.name] = np.transpose(v.mask, (1, 2, 0))
    pool = tmp_path / "pool.zarr"
    run_prep(None, pool, size=24, images=tmp_path / "raw", classes="background,RV,MYO,LV")
    sel = tmp_path / "sel.json"
    select(method="random", budget="30%", dataset=pool, seed=0, out=sel, device="cpu")
    export_selection(sel, tmp_path / "x")
    rows = list(csv.DictReader(open(tmp_path / "x" / "tasks.csv")))
    assert "RV:230,25,75::" in (tmp_path / "x" / "labelmap.txt").read_text()
    files = []
    for n, r in enumerate(rows):
        given = np.asarray(Image.open(tmp_path / "x" / r["image_png"]))
        lab = truth[r["volume"]][:, :, int(r["index0"])]
        assert given.shape == lab.shape and given.dtype == np.uint8
        out = tmp_path / "x" / r["label_png"]
        if n % 2:                       # RGB, in labelmap.txt's colours
            Image.fromarray(np.array(PALETTE, np.uint8)[lab]).save(out)
        else:                           # class index per pixel
            Image.fromarray(lab.astype(np.uint8)).save(out)
        files.append(out)
    m = import_labels(pool, files, selection=sel, out=tmp_path / "lab.json")
    store = DatasetStore(pool)
    assert m["imported"]["requested_arrived"] == len(rows) and not m["imported"]["requested_missing"]
    for r in rows:
        np.testing.assert_array_equal(store.masks([store.index_of[r["slice_id"]]])[0],
                                      truth[r["volume"]][:, :, int(r["index0"])])
    assert store.available("masks").sum() == len(rows)      # the other slices stay unlabelled
    wrong = tmp_path / "x" / "labels_png" / rows[0]["label_png"].split("/")[-1]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(wrong)
    with pytest.raises(AlsegError, match="the image's slices"):
        import_labels(pool, [wrong], selection=sel, out=tmp_path / "lab2.json")


def test_loop_human_rounds_pause_for_annotation(campaign, tmp_path):
    import shutil
    import subprocess
    import sys

    d, truth = campaign
    pool = tmp_path / "pool.zarr"
    from alseg_cli.prep import run_prep
    run_prep(None, pool, size=32, images=d / "raw", classes="background,RV,MYO,LV")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "alseg_cli", "loop", "-o", str(run), "--dataset", str(pool), "--methods", "random",
           "--seeds", "0", "--budgets", "10,20", "--iterations", "3", "--base-channels", "4", "--device", "cpu",
           "--human", "--warm-start", "--no-progress"]

    def annotate(round_dir):
        rows, painted = _paint(round_dir / "export", truth)
        for vol, (arr, aff) in painted.items():
            nib.save(nib.Nifti1Image(arr, aff), str(round_dir / "export" / "labels" / f"{vol}.nii.gz"))
        files = sorted((round_dir / "export" / "labels").glob("*.nii.gz"))
        r = subprocess.run([sys.executable, "-m", "alseg_cli", "import-labels", str(pool), *map(str, files),
                            "--selection", str(round_dir / "selection.json"), "-o", str(round_dir / "labelled.json")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return rows

    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 75 and "import-labels" in first.stderr, first.stderr
    r1 = run / "random" / "seed0" / "round10"
    assert (r1 / "export" / "tasks.csv").exists() and not (r1 / "model").exists()
    rows1 = annotate(r1)
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 75, second.stderr
    r2 = run / "random" / "seed0" / "round20"
    sel2 = json.loads((r2 / "selection.json").read_text())
    assert not set(sel2["selected"]) & {r["slice_id"] for r in rows1}       # picks new slices
    assert json.loads((r1 / "model" / "manifest.json").read_text())["validation"].startswith("none")
    annotate(r2)
    third = subprocess.run(cmd, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert json.loads((r2 / ".done" / "evaluate.json").read_text())["skipped"].startswith("no fully annotated")
    inits = [json.loads((r / "model" / "manifest.json").read_text())["args"].get("init") for r in (r1, r2)]
    assert inits == [None, str(r1 / "model")]      # a human round warm-starts from the one before
    shutil.rmtree(run)
    bad = subprocess.run(cmd[:-3] + ["--methods", "random,coreset", "--human"], capture_output=True, text=True)
    assert bad.returncode == 1 and "one method, one seed" in bad.stderr


def test_nnunet_ignore_label_is_not_a_class(tmp_path):
    from alseg_cli.prep import run_prep
    from alseg_cli.store import DatasetStore

    (tmp_path / "im").mkdir(), (tmp_path / "ma").mkdir()
    img = np.random.default_rng(1).random((16, 16, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, AFFINE), str(tmp_path / "im" / "p0.nii.gz"))
    run_prep(None, tmp_path / "pool.zarr", size=16, images=tmp_path / "im", classes="background,RV,MYO,LV,ignore")
    store = DatasetStore(tmp_path / "pool.zarr")
    assert store.num_classes == 4 and store.attrs["ignore_label"] == 4 and "ignore" not in store.attrs["classes"].values()
    lab = np.full((16, 16, 4), 4, np.uint8)
    lab[..., 1] = 0
    lab[4:8, 4:8, 1] = 2
    nib.save(nib.Nifti1Image(lab, AFFINE), str(tmp_path / "ma" / "p0_seg.nii.gz"))
    with pytest.raises(AlsegError, match="import-labels --ignore 4"):
        run_prep(None, tmp_path / "d.zarr", size=16, images=tmp_path / "im", masks=tmp_path / "ma",
                 classes="background,RV,MYO,LV,ignore")
    from alseg_cli.campaign.importer import import_labels
    lab_file = tmp_path / "p0.nii.gz"
    nib.save(nib.Nifti1Image(lab, AFFINE), str(lab_file))
    m = import_labels(tmp_path / "pool.zarr", [lab_file], out=tmp_path / "l.json")     # ignore: the store's
    assert m["selected"] == ["p0:001"] and DatasetStore(tmp_path / "pool.zarr").available("masks").sum() == 1
