"""`alseg predict` on volume files that were never prepped: the training store's preprocessing,
native-size labels with the input's full header, a label table, and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from alseg_cli.errors import AlsegError

torch.set_num_threads(1)


def _save(vol, path, image=True):
    arr = np.transpose(vol.image[:, 0] if image else vol.mask, (1, 2, 0))           # (Z, H, W) -> (H, W, Z)
    affine = np.array([[0, -1.5, 0, 40.0], [1.5, 0, 0, -12.0], [0, 0, 10.0, 7.5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(arr.astype(np.float32 if image else np.uint8), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    nib.save(img, str(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from alseg_cli.data.phantoms import make_phantoms
    from alseg_cli.prep import run_prep
    from alseg_cli.segmentation.train import train_seg

    d = tmp_path_factory.mktemp("predict")
    (d / "im").mkdir(), (d / "ma").mkdir(), (d / "new").mkdir()
    vols = list(make_phantoms(patients=7, size=48, slices=6, seed=4))
    for v in vols[:12]:
        _save(v, d / "im" / f"{v.name}.nii.gz")
        _save(v, d / "ma" / f"{v.name}_seg.nii.gz", image=False)
    held = vols[12]
    _save(held, d / "new" / "scan.nii.gz")
    run_prep(None, d / "data.zarr", size=32, split="train=0.7,val=0.3", images=d / "im", masks=d / "ma",
             classes="background,RV,MYO,LV")
    train_seg(d / "data.zarr", "all", d / "model", iterations=150, val_every=150, base_channels=8, lr=3e-3,
              optimizer="adamw", class_weights="balanced", progress=False, seed=0, device="cpu")
    return d, held


def test_predict_keeps_the_header_and_finds_the_structures(trained, tmp_path):
    from alseg_cli.campaign.predict import predict_files

    d, held = trained
    m = predict_files(d / "model", [d / "new" / "scan.nii.gz"], tmp_path / "out", device="cpu")
    src, out = nib.load(str(d / "new" / "scan.nii.gz")), nib.load(str(tmp_path / "out" / "scan.nii.gz"))
    assert out.shape == src.shape and out.get_data_dtype() == np.uint8
    assert np.allclose(out.get_qform(), src.get_qform()) and np.allclose(out.get_sform(), src.get_sform())
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
    pred = np.asarray(out.dataobj)
    truth = np.transpose(held.mask, (1, 2, 0))
    dice = [2 * ((pred == c) & (truth == c)).sum() / ((pred == c).sum() + (truth == c).sum()) for c in (1, 2, 3)]
    assert np.mean(dice) > 0.5, dice
    assert m["kind"] == "prediction" and m["volumes"][0]["output"] == "scan.nii.gz"
    table = (tmp_path / "out" / "labels.txt").read_text()
    assert '"LV"' in table and '"background"' in table
    assert m["preprocessing"]["size"] == 32


def test_predict_itk_input_probabilities_and_errors(trained, tmp_path):
    import SimpleITK as sitk
    from alseg_cli.campaign.predict import predict_files

    d, _ = trained
    mha = tmp_path / "scan.mha"
    sitk.WriteImage(sitk.ReadImage(str(d / "new" / "scan.nii.gz")), str(mha))
    predict_files(d / "model", [mha], tmp_path / "o", device="cpu", probabilities=True)
    ref, got = sitk.ReadImage(str(mha)), sitk.ReadImage(str(tmp_path / "o" / "scan.mha"))
    assert got.GetSize() == ref.GetSize() and np.allclose(got.GetDirection(), ref.GetDirection())
    assert np.allclose(got.GetOrigin(), ref.GetOrigin()) and np.allclose(got.GetSpacing(), ref.GetSpacing())
    probs = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o" / "scan_probabilities.mha")))
    assert probs.shape[-1] == 4 and np.allclose(probs.sum(-1), 1, atol=1e-3)
    with pytest.raises(AlsegError, match="no such file"):
        predict_files(d / "model", [tmp_path / "missing.nii.gz"], tmp_path / "x", device="cpu")
    with pytest.raises(AlsegError, match="already exists"):
        predict_files(d / "model", [mha], tmp_path / "o", device="cpu")
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "predict", str(d / "data.zarr"), str(mha), "-o",
                        str(tmp_path / "y")], capture_output=True, text=True)
    assert r.returncode != 0 and "not a model directory" in r.stderr and r.stderr.strip().count("\n") == 0
    ok = subprocess.run([sys.executable, "-m", "alseg_cli", "predict", str(d / "model"), str(mha), "-o",
                         str(tmp_path / "z"), "--device", "cpu"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["volumes"][0]["output"] == "scan.mha"


def _dice(pred, truth):
    return float(np.mean([2 * ((pred == c) & (truth == c)).sum() / ((pred == c).sum() + (truth == c).sum())
                          for c in (1, 2, 3)]))


def test_predict_dicom_folder_and_overlays(trained, tmp_path):
    """A DICOM series (one file per slice, as scanners write them) is predicted into NIfTI with
    the affine its positions give, and --overlays draws the most foreground slices."""
    import SimpleITK as sitk
    from alseg_cli.campaign.predict import predict_files

    d, held = trained
    xyz = np.transpose(held.image[:, 0], (1, 2, 0))
    scaled = np.round((xyz - xyz.min()) / (np.ptp(xyz) + 1e-9) * 2000).astype(np.int16)
    folder = tmp_path / "scan_dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(scaled.shape[2]):
        s = sitk.GetImageFromArray(np.ascontiguousarray(scaled[:, :, k].T)[None])[:, :, 0]
        s.SetSpacing((1.5, 1.5))
        for tag, val in (("0020|000e", "1.2.826.0.1.3680043.2.1125.7"), ("0020|000d", "1.2.3"), ("0008|0060", "MR"),
                         ("0020|0032", f"0\\0\\{10.0 * k}"), ("0020|0013", str(k + 1)),
                         ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "10.0")):
            s.SetMetaData(tag, val)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(s)
    m = predict_files(d / "model", [folder], tmp_path / "out", device="cpu", overlays=3)
    out = nib.load(str(tmp_path / "out" / "scan_dicom.nii.gz"))
    assert out.shape == xyz.shape
    assert np.allclose(np.abs(np.diag(out.affine))[:3], (1.5, 1.5, 10.0))
    assert _dice(np.asarray(out.dataobj), np.transpose(held.mask, (1, 2, 0))) > 0.5
    png = tmp_path / "out" / m["volumes"][0]["overlay"]
    from PIL import Image
    assert png.name == "scan_dicom_overlay.png" and Image.open(png).size[0] > 3 * 100
