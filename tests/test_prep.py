"""`alseg prep` end to end on tiny sources written in code: every layout, splits,
normalisation, atomic writes, the CLI (CliRunner and one real subprocess) and every bad input."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alseg_cli.cli.main import app
from alseg_cli.data.normalize import normalize_volume
from alseg_cli.data.splits import load_split_file, parse_split, random_split, split_counts
from alseg_cli.errors import AlsegError
from alseg_cli.prep import run_prep
from alseg_cli.store import DatasetStore

runner = CliRunner()


def save_nii(path, arr, zooms=(1.0, 1.0, 1.0)):
    img = nib.Nifti1Image(np.asarray(arr), np.diag(list(zooms) + [1.0]))
    img.header.set_zooms(tuple(zooms) + (1.0,) * (np.asarray(arr).ndim - 3))
    nib.save(img, str(path))
    return path


def make_msd(root: Path, cases=4, shape=(12, 10, 5), zooms=(1.0, 1.0, 4.0)):
    """MSD layout: 3 classes, slice axis = the last (largest spacing)."""
    rng = np.random.default_rng(1)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(cases):
        save_nii(root / "imagesTr" / f"case_{i:03d}.nii.gz", rng.random(shape).astype(np.float32) * 1000, zooms)
        lab = rng.integers(0, 3, shape).astype(np.uint8)
        save_nii(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab, zooms)
    return root


def make_acdc(root: Path, patients=3):
    rng = np.random.default_rng(2)
    for p in range(1, patients + 1):
        d = root / f"patient{p:03d}"
        d.mkdir(parents=True)
        for f in (1, 12):
            stem = d / f"patient{p:03d}_frame{f:02d}"
            shape = (16, 14, 3 + p)
            save_nii(Path(f"{stem}.nii.gz"), rng.random(shape).astype(np.float32))
            mask = rng.integers(0, 4, shape).astype(np.uint8)
            save_nii(Path(f"{stem}_gt.nii.gz"), mask)
            scrib = np.where(rng.random(shape) < 0.1, mask, 4).astype(np.uint8)
            save_nii(Path(f"{stem}_scribble.nii.gz"), scrib)
    return root


def leftovers(folder: Path, out_name="out.zarr"):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((out_name, f".{out_name}")))


# ---------------------------------------------------------------- pure functions
def test_normalize_matches_literal_percentile_clip():
    rng = np.random.default_rng(0)
    img = rng.gamma(2.0, 50.0, (3, 2, 9, 7)).astype(np.float32)
    img[0, 0, 0, 0] = 1e6                                   # a hot voxel must not squash the range
    img[:, 1] = 5.0                                         # constant channel -> zeros
    out = normalize_volume(img)
    vals = np.sort(img[:, 0].ravel().astype(np.float64))
    n = vals.size

    def pct(q):                                             # numpy's default 'linear' method, by hand
        pos = (n - 1) * q / 100.0
        lo = int(np.floor(pos))
        return vals[lo] + (pos - lo) * (vals[min(lo + 1, n - 1)] - vals[lo])

    lo, hi = pct(0.5), pct(99.5)
    expect = [(min(max(v, lo), hi) - lo) / (hi - lo) for v in img[:, 0].ravel()]
    np.testing.assert_allclose(out[:, 0].ravel(), expect, rtol=1e-5, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == np.float32
    assert np.all(out[:, 1] == 0)


def test_split_parse_counts_and_determinism():
    assert parse_split("train=0.7,val=0.1,test=0.2") == {"train": 0.7, "val": 0.1, "test": 0.2}
    for bad in ("train=0.7", "train=0.5,val=x", "train", "a=0.5,a=0.5", "a=-1,b=2"):
        with pytest.raises(AlsegError, match="--split"):
            parse_split(bad)
    assert split_counts(10, {"train": 0.7, "val": 0.1, "test": 0.2}) == {"train": 7, "val": 1, "test": 2}
    assert sum(split_counts(13, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}).values()) == 13
    pats = [f"p{i:03d}" for i in range(100)]
    a = random_split(pats, parse_split("train=0.7,val=0.1,test=0.2"), seed=5)
    assert a == random_split(list(reversed(pats)), parse_split("train=0.7,val=0.1,test=0.2"), seed=5)
    assert a != random_split(pats, parse_split("train=0.7,val=0.1,test=0.2"), seed=6)
    assert [sum(v == s for v in a.values()) for s in ("train", "val", "test")] == [70, 10, 20]


def test_split_file_json_and_csv(tmp_path):
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"p1": "train", "p2": "test"}))
    assert load_split_file(j) == {"p1": "train", "p2": "test"}
    c = tmp_path / "s.csv"
    c.write_text("patient,split\np1,train\np2,val\n")
    assert load_split_file(c) == {"p1": "train", "p2": "val"}
    c.write_text("p1,train\np1,test\n")
    with pytest.raises(AlsegError, match="two splits"):
        load_split_file(c)


# ---------------------------------------------------------------- layouts end to end
def test_prep_msd(tmp_path):
    src = make_msd(tmp_path / "msd")
    m = run_prep(src, tmp_path / "out.zarr", size=16, split="train=0.5,val=0.25,test=0.25", seed=0)
    ds = DatasetStore(tmp_path / "out.zarr")
    assert m["layout"] == "msd" and m["num_volumes"] == 4 and m["slice_axis"] == 2
    assert len(ds) == m["num_slices"] == 4 * 5 and ds.images().shape == (20, 1, 16, 16)
    assert ds.num_classes == 3 and ds.masks().max() <= 2
    info = ds.volume_info[0]
    assert info["shape"] == [5, 12, 10] and info["spacing"] == [4.0, 1.0, 1.0] and info["slice_axis"] == 2
    native = nib.load(str(src / "labelsTr" / "case_000.nii.gz")).get_fdata().astype(np.uint8)
    np.testing.assert_array_equal(ds.native_mask(0), np.transpose(native, (2, 0, 1)))
    assert 0.0 <= ds.images().min() and ds.images().max() <= 1.0
    assert m["split_patients"] == {"train": 2, "val": 1, "test": 1}
    saved = json.loads((tmp_path / "out.zarr.manifest.json").read_text())
    assert saved["content_hash"] == ds.attrs["content_hash"] == m["content_hash"]


def test_prep_acdc_layout_groups_frames_by_patient(tmp_path):
    src = make_acdc(tmp_path / "acdc")
    m = run_prep(src, tmp_path / "out.zarr", size=16, split="train=0.34,val=0.33,test=0.33", seed=3)
    ds = DatasetStore(tmp_path / "out.zarr")
    assert m["num_volumes"] == 6 and m["num_patients"] == 3 and len(ds) == 2 * (4 + 5 + 6)
    assert ds.unannotated == 4 and ds.has_scribbles and m["classes"]["1"] == "RV"
    for p in set(ds.patients):
        assert len(set(ds.split[ds.patients == p])) == 1          # no straddling
    assert ds.slice_ids[0] == "patient001_frame01:000"


def test_prep_force_forced_axis_and_no_normalize(tmp_path):
    src = make_msd(tmp_path / "msd", cases=2)
    out = tmp_path / "out.zarr"
    run_prep(src, out, size=8, split="train=1")
    with pytest.raises(AlsegError, match="--force"):
        run_prep(src, out, size=8, split="train=1")
    m = run_prep(src, out, size=8, split="train=1", slice_axis=0, normalize=False, force=True)
    ds = DatasetStore(out)
    assert m["slice_axis"] == 0 and len(ds) == 2 * 12 and ds.images().max() > 1.0


def test_prep_folders_hdf5_table_and_4d(tmp_path):
    rng = np.random.default_rng(4)
    im, ma = tmp_path / "im", tmp_path / "ma"
    im.mkdir(); ma.mkdir()
    for i in range(2):
        save_nii(im / f"sub{i}_scan.nii.gz", rng.random((8, 8, 3, 2)).astype(np.float32))   # 2 channels
        save_nii(ma / f"sub{i}_scan_mask.nii.gz", rng.integers(0, 2, (8, 8, 3)).astype(np.uint8))
    m = run_prep(None, tmp_path / "f.zarr", size=8, split="train=1", images=im, masks=ma,
                 patient_regex=r"^(sub\d+)")
    assert m["layout"] == "folders" and m["channels"] == 2 and m["num_slices"] == 6
    assert m["num_patients"] == 2 and m["has_scribbles"] is False

    h5dir = tmp_path / "h5"
    h5dir.mkdir()
    for name in ("patient001_frame01", "patient001_frame02"):
        with h5py.File(h5dir / f"{name}.h5", "w") as fh:
            fh["image"] = rng.random((4, 10, 10)).astype(np.float32)
            fh["label"] = rng.integers(0, 4, (4, 10, 10)).astype(np.uint8)
            fh["scribble"] = np.full((4, 10, 10), 4, np.uint8)
    m = run_prep(h5dir, tmp_path / "h.zarr", size=8, split="train=1", unannotated=4)
    assert m["layout"] == "hdf5" and m["num_patients"] == 1 and m["num_slices"] == 8
    assert m["slice_axis"] == 0 and m["unannotated"] == 4

    table = tmp_path / "t.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "mask", "scribble", "patient", "volume"])
        w.writerow(["im/sub0_scan.nii.gz", "ma/sub0_scan_mask.nii.gz", "", "A", "a1"])
        w.writerow(["im/sub1_scan.nii.gz", "ma/sub1_scan_mask.nii.gz", "", "A", "a2"])
    m = run_prep(table, tmp_path / "t.zarr", size=8, split="train=1")
    assert m["layout"] == "table" and m["num_volumes"] == 2 and m["num_patients"] == 1


def test_prep_davis_frames_binarised_rgb(tmp_path):
    for seq in ("bear", "car"):
        jd = tmp_path / "davis" / "JPEGImages" / "480p" / seq
        ad = tmp_path / "davis" / "Annotations" / "480p" / seq
        jd.mkdir(parents=True); ad.mkdir(parents=True)
        for t in range(3):
            Image.fromarray(np.full((16, 16, 3), 30 * t, np.uint8)).save(jd / f"{t:05d}.jpg")
            lab = np.zeros((16, 16), np.uint8)
            lab[2:5, 2:5], lab[6:9, 6:9] = 1, 2                   # two objects -> one foreground
            Image.fromarray(lab, mode="L").convert("P").save(ad / f"{t:05d}.png")
    m = run_prep(tmp_path / "davis", tmp_path / "out.zarr", size=16, split="train=1")
    ds = DatasetStore(tmp_path / "out.zarr")
    assert m["layout"] == "davis" and m["channels"] == 3 and m["num_slices"] == 6
    assert ds.num_classes == 2 and set(np.unique(ds.masks())) == {0, 1}
    assert ds.masks()[0, 7, 7] == 1 and ds.patients.tolist().count("bear") == 3


def test_prep_phantoms_same_seed_same_split(tmp_path):
    a = run_prep("phantoms", tmp_path / "a.zarr", size=32, patients=5, seed=1)
    b = run_prep("phantoms", tmp_path / "b.zarr", size=32, patients=5, seed=1)
    assert a["content_hash"] == b["content_hash"] and a["splits"] == b["splits"]
    assert a["num_volumes"] == 10 and DatasetStore(tmp_path / "a.zarr").size == 32


# ---------------------------------------------------------------- CLI
def test_cli_prep_stdout_is_one_manifest_line(tmp_path):
    src = make_msd(tmp_path / "msd", cases=3)
    r = runner.invoke(app, ["prep", str(src), "-o", str(tmp_path / "o.zarr"), "--size", "8",
                            "--split-fractions", "train=0.67,test=0.33"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["kind"] == "dataset"
    assert "slices" in r.stderr                               # the summary table is on stderr
    split = tmp_path / "split.csv"
    split.write_text("case_000,train\ncase_001,val\ncase_002,test\n")
    r = runner.invoke(app, ["prep", str(src), "-o", str(tmp_path / "p.zarr"), "--size", "8",
                            "--split-file", str(split)])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["split_patients"] == {"test": 1, "train": 1, "val": 1}


def test_real_subprocess_phantoms(tmp_path):
    exe = Path(sys.executable).with_name("alseg")
    out = subprocess.run([str(exe), "prep", "phantoms", "-o", str(tmp_path / "d.zarr"),
                          "--patients", "3", "--size", "16"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert m["num_volumes"] == 6 and Path(m["outputs"]["dataset"]).is_dir()
    assert (tmp_path / "d.zarr.manifest.json").exists()


# ---------------------------------------------------------------- bad inputs (issue 2, item 6)
def _bad_label(value):
    def make(root):
        src = make_msd(root, cases=2)
        lab = np.zeros((12, 10, 5), np.float32 if isinstance(value, float) else np.int16)
        lab[0, 0, 0] = value
        save_nii(src / "labelsTr" / "case_001.nii.gz", lab, (1.0, 1.0, 4.0))
        return src, "case_001.nii.gz"
    return make


def _shape_mismatch(root):
    src = make_msd(root, cases=2)
    save_nii(src / "labelsTr" / "case_001.nii.gz", np.zeros((12, 10, 4), np.uint8), (1.0, 1.0, 4.0))
    return src, "does not match"


def _truncated(root):
    src = make_msd(root, cases=2)
    f = src / "imagesTr" / "case_001.nii.gz"
    f.write_bytes(f.read_bytes()[:300])
    return src, "case_001.nii.gz: unreadable or truncated"


def _not_in_dataset_json(root):
    src = make_msd(root, cases=2)
    (src / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a"}}))
    return src, "not one of the dataset's classes"


def _empty(root):
    root.mkdir()
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    return root, "empty source"


def _no_pair(root):
    src = make_msd(root, cases=2)
    (src / "labelsTr" / "case_001.nii.gz").unlink()
    return src, "case_001.nii.gz: no label"


def _missing_folder(root):
    src = make_msd(root, cases=2)
    for f in (src / "labelsTr").iterdir():
        f.unlink()
    (src / "labelsTr").rmdir()
    return src, "labelsTr: required folder"


BAD = {"label 255": _bad_label(255), "negative label": _bad_label(-1),
       "non-integer label": _bad_label(1.5), "value not in dataset.json": _not_in_dataset_json,
       "shape mismatch": _shape_mismatch, "truncated file": _truncated, "empty source": _empty,
       "image with no pair": _no_pair, "missing folder": _missing_folder}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_nothing_left(tmp_path, case):
    src, needle = BAD[case](tmp_path / "src")
    r = runner.invoke(app, ["prep", str(src), "-o", str(tmp_path / "out.zarr"), "--size", "8"])
    assert r.exit_code != 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["label 255", "shape mismatch", "truncated file", "image with no pair"])
def test_skip_bad_skips_and_lists(tmp_path, case):
    src, needle = BAD[case](tmp_path / "src")
    m = run_prep(src, tmp_path / "out.zarr", size=8, split="train=1", skip_bad=True)
    assert m["num_volumes"] == 1 and len(m["skipped"]) == 1
    assert needle.split(":")[0] in json.dumps(m["skipped"])
    assert DatasetStore(tmp_path / "out.zarr").volumes.tolist().count("case_000") == 5


def test_split_file_missing_patient_and_bad_options(tmp_path):
    src = make_msd(tmp_path / "src", cases=2)
    sf = tmp_path / "s.json"
    sf.write_text(json.dumps({"case_000": "train"}))
    r = runner.invoke(app, ["prep", str(src), "-o", str(tmp_path / "out.zarr"), "--split-file", str(sf)])
    assert r.exit_code != 0 and "case_001" in r.stderr and leftovers(tmp_path) == []
    r = runner.invoke(app, ["prep", str(src), "-o", str(tmp_path / "out.zarr"), "--split-fractions", "train=2"])
    assert r.exit_code != 0 and "sum to 1" in r.stderr
    r = runner.invoke(app, ["prep", str(tmp_path / "nope"), "-o", str(tmp_path / "out.zarr")])
    assert r.exit_code != 0 and "source not found" in r.stderr


def test_check_labels_values():
    from alseg_cli.prep import check_labels

    assert check_labels(np.array([0.0, 2.0, 1.0]), "f").dtype == np.uint8
    for bad, msg in (([0, 255], "out of range"), ([-1, 0], "negative"), ([0.5], "not integers"),
                     ([np.nan], "NaN"), ([0, 3], "not one of the dataset")):
        with pytest.raises(AlsegError, match=msg):
            check_labels(np.array(bad), "lab.nii.gz", allowed={0, 1, 2} if msg == "not one of the dataset" else None)
    np.testing.assert_array_equal(check_labels(np.array([0, 255, 2]), "s", unannotated=255), [0, 255, 2])
    np.testing.assert_array_equal(check_labels(np.array([0, 7, 2]), "m", binarize=True), [0, 1, 1])


def test_scribbles_with_unannotated_255(tmp_path):
    im, ma, sc = (tmp_path / d for d in ("im", "ma", "sc"))
    for d in (im, ma, sc):
        d.mkdir()
    rng = np.random.default_rng(5)
    mask = rng.integers(0, 3, (8, 8, 4)).astype(np.uint8)
    save_nii(im / "v.nii.gz", rng.random((8, 8, 4)).astype(np.float32))
    save_nii(ma / "v.nii.gz", mask)
    save_nii(sc / "v_scribble.nii.gz", np.where(rng.random(mask.shape) < 0.2, mask, 255).astype(np.uint8))
    with pytest.raises(AlsegError, match="out of range"):
        run_prep(None, tmp_path / "a.zarr", size=8, split="train=1", images=im, masks=ma, scribbles=sc)
    m = run_prep(None, tmp_path / "b.zarr", size=8, split="train=1", images=im, masks=ma, scribbles=sc,
                 unannotated=255)
    ds = DatasetStore(tmp_path / "b.zarr")
    assert m["unannotated"] == 255 and ds.num_classes == 3 and 255 in np.unique(ds.scribbles())


def test_empty_folder_and_unknown_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["prep", str(tmp_path / "empty"), "-o", str(tmp_path / "out.zarr")])
    assert r.exit_code != 0 and "empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    r = runner.invoke(app, ["prep", str(tmp_path / "odd"), "-o", str(tmp_path / "out.zarr")])
    assert r.exit_code != 0 and "no known layout" in r.stderr and leftovers(tmp_path) == []


def _folders_with_stray_value(tmp_path, stray=7):
    """Three 4-class volumes; sub2's mask holds one voxel of a stray value."""
    rng = np.random.default_rng(9)
    im, ma = tmp_path / "im", tmp_path / "ma"
    im.mkdir(); ma.mkdir()
    for i in range(3):
        save_nii(im / f"sub{i}.nii.gz", rng.random((8, 8, 3)).astype(np.float32))
        lab = rng.integers(0, 4, (8, 8, 3)).astype(np.uint8)
        if i == 2:
            lab[0, 0, 0] = stray
        save_nii(ma / f"sub{i}_seg.nii.gz", lab)
    return im, ma


def test_stray_label_value_is_refused_naming_the_file(tmp_path):
    im, ma = _folders_with_stray_value(tmp_path)
    out = tmp_path / "out.zarr"
    r = runner.invoke(app, ["prep", "--images", str(im), "--masks", str(ma), "-o", str(out), "--size", "8"])
    assert r.exit_code != 0 and r.stdout == ""
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "sub2_seg.nii.gz: label value 7 leaves a gap" in line
    assert "--classes 4" in line and leftovers(tmp_path) == []
    # --classes names the set: the stray value is an error naming the file, or skipped
    r = runner.invoke(app, ["prep", "--images", str(im), "--masks", str(ma), "-o", str(out), "--size", "8",
                            "--classes", "background,RV,Myo,LV"])
    assert r.exit_code != 0 and "sub2_seg.nii.gz: label value 7 is not one of the dataset's classes" in r.stderr
    m = run_prep(None, out, size=8, split="train=1", images=im, masks=ma, classes="4", skip_bad=True)
    assert m["num_classes"] == 4 and m["num_volumes"] == 2 and "sub2" in json.dumps(m["skipped"])
    # a class set that really has 8 classes is kept when asked for
    m = run_prep(None, tmp_path / "eight.zarr", size=8, split="train=1", images=im, masks=ma, classes="8")
    assert m["num_classes"] == 8 and m["num_volumes"] == 3


def test_parse_classes():
    from alseg_cli.prep import parse_classes

    assert parse_classes("3") == {0: "background", 1: "class1", 2: "class2"}
    assert parse_classes("background,RV") == {0: "background", 1: "RV"}
    assert parse_classes("0=bg,2=liver") == {0: "bg", 2: "liver"}
    for bad in ("1", "x=liver", "bg"):
        with pytest.raises(AlsegError):
            parse_classes(bad)


def test_layout_detection_order_is_explicit(tmp_path):
    from alseg_cli.io.layouts import DETECTION_ORDER, LAYOUTS, detection_order

    assert set(detection_order()) == set(LAYOUTS.names()) and detection_order()[:2] == ("acdc", "msd")
    src = make_msd(tmp_path / "src", cases=2)
    with h5py.File(src / "stray.h5", "w") as fh:        # alphabetical order would call this hdf5
        fh["image"] = np.zeros((2, 4, 4), np.float32)
    m = run_prep(src, tmp_path / "out.zarr", size=8, split="train=1")
    assert m["layout"] == "msd" and DETECTION_ORDER.index("msd") < DETECTION_ORDER.index("hdf5")
