"""Readers (NIfTI, MHA/NRRD, HDF5, frames), pairing, and slice-axis detection, on tiny files
written in code."""
import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from alseg_cli.errors import AlsegError
from alseg_cli.io.layouts import list_folders, list_msd, list_source, patient_of
from alseg_cli.io.readers import Ref, header, read, stem_of, suffix_of
from alseg_cli.prep import detect_slice_axis


def save_nii(path, arr, zooms=(1.0, 1.0, 1.0)):
    img = nib.Nifti1Image(np.asarray(arr), np.diag(list(zooms[:3]) + [1.0]))
    img.header.set_zooms(tuple(zooms) + (1.0,) * (arr.ndim - len(zooms)))
    nib.save(img, str(path))
    return path


def test_names_and_suffixes():
    assert stem_of("a/case_001.nii.gz") == "case_001" and suffix_of("x.NII.GZ") == ".nii.gz"
    assert stem_of("v.mha") == "v" and stem_of("seq/00001.jpg") == "00001"
    assert patient_of("patient007_frame12", None) == "patient007"
    assert patient_of("sub-03_ses-1", r"(sub-\d+)") == "sub-03"
    assert patient_of("abc", r"(sub-\d+)") is None


def test_nifti_roundtrip_and_header(tmp_path):
    arr = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    f = save_nii(tmp_path / "v.nii.gz", arr, (1.0, 1.5, 3.0))
    raw = read(Ref("nifti", str(f)))
    np.testing.assert_array_equal(raw.data, arr)
    assert raw.spacing == (1.0, 1.5, 3.0) and not raw.channels
    assert header(Ref("nifti", str(f))) == ((6, 5, 4), (1.0, 1.5, 3.0))
    four = save_nii(tmp_path / "c.nii.gz", np.zeros((6, 5, 4, 2), np.float32), (1.0, 1.0, 2.0))
    assert read(Ref("nifti", str(four))).channels


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_itk_transposed_to_xyz(tmp_path, ext):
    zyx = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    img = sitk.GetImageFromArray(zyx)
    img.SetSpacing((0.5, 0.7, 4.0))                       # (x, y, z)
    f = tmp_path / f"v{ext}"
    sitk.WriteImage(img, str(f))
    raw = read(Ref("itk", str(f)))
    np.testing.assert_array_equal(raw.data, zyx.transpose(2, 1, 0))
    assert raw.spacing == (0.5, 0.7, 4.0)
    assert header(Ref("itk", str(f))) == ((6, 5, 4), (0.5, 0.7, 4.0))
    np.testing.assert_allclose(np.diag(raw.affine)[:3], (0.5, 0.7, 4.0))


def test_hdf5_and_missing_key(tmp_path):
    f = tmp_path / "p.h5"
    with h5py.File(f, "w") as fh:
        fh["image"] = np.ones((3, 8, 8), np.float32)
    assert read(Ref("hdf5", str(f), "image")).data.shape == (3, 8, 8)
    with pytest.raises(AlsegError, match="no dataset 'label'"):
        read(Ref("hdf5", str(f), "label"))


def test_frames_rgb_and_palette(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for t in range(3):
        Image.fromarray(np.full((6, 7, 3), 40 * t, np.uint8)).save(tmp_path / "img" / f"{t:05d}.png")
        lab = Image.fromarray(np.full((6, 7), t, np.uint8), mode="L").convert("P")
        lab.save(tmp_path / "lab" / f"{t:05d}.png")
    img = read(Ref("frames", str(tmp_path / "img")))
    assert img.data.shape == (3, 6, 7, 3) and img.channels and img.data[2, 0, 0, 0] == 80
    lab = read(Ref("frame-labels", str(tmp_path / "lab")))
    assert lab.data.shape == (3, 6, 7) and sorted(np.unique(lab.data)) == [0, 1, 2]


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    good = save_nii(tmp_path / "g.nii.gz", np.zeros((20, 20, 20), np.float32))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(AlsegError, match="cut.nii.gz: unreadable or truncated"):
        read(Ref("nifti", str(cut)))
    junk = tmp_path / "junk.mha"
    junk.write_text("not an image")
    with pytest.raises(AlsegError, match="junk.mha"):
        read(Ref("itk", str(junk)))


def test_pairing_separate_folders(tmp_path):
    im, ma, sc = (tmp_path / d for d in ("im", "ma", "sc"))
    for d in (im, ma, sc):
        d.mkdir()
    for name in ("a", "b", "c", "d"):
        save_nii(im / f"{name}.nii.gz", np.zeros((4, 4, 2)))
    save_nii(ma / "a.nii.gz", np.zeros((4, 4, 2)))            # same name
    save_nii(ma / "b_seg.nii.gz", np.zeros((4, 4, 2)))        # stem + suffix
    save_nii(ma / "c_label.nii", np.zeros((4, 4, 2)))        # other suffix, other extension
    for name in ("a", "b", "c"):
        save_nii(sc / f"{name}_scribble.nii.gz", np.zeros((4, 4, 2)))
    listing = list_folders(im, ma, sc, {})
    pairs = {s.name: (s.mask.path.split("/")[-1], s.scribble.path.split("/")[-1]) for s in listing.specs}
    assert pairs == {"a": ("a.nii.gz", "a_scribble.nii.gz"), "b": ("b_seg.nii.gz", "b_scribble.nii.gz"),
                     "c": ("c_label.nii", "c_scribble.nii.gz")}
    assert len(listing.problems) == 1 and listing.problems[0][0].endswith("d.nii.gz")
    assert "pairs with no mask" in listing.problems[0][1]


def test_pairing_one_folder_with_gt_suffix(tmp_path):
    for name in ("patient001_frame01", "patient001_frame12", "patient002_frame01"):
        save_nii(tmp_path / f"{name}.nii.gz", np.zeros((4, 4, 2)))
        save_nii(tmp_path / f"{name}_gt.nii.gz", np.zeros((4, 4, 2)))
    listing = list_folders(tmp_path, tmp_path, None, {})
    assert [s.name for s in listing.specs] == ["patient001_frame01", "patient001_frame12", "patient002_frame01"]
    assert [s.patient for s in listing.specs] == ["patient001", "patient001", "patient002"]
    assert not listing.problems


def test_msd_channels_and_dataset_json(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for case in ("x_001", "x_002"):
        for c in range(2):
            save_nii(tmp_path / "imagesTr" / f"{case}_{c:04d}.nii.gz", np.zeros((4, 4, 2)))
        save_nii(tmp_path / "labelsTr" / f"{case}.nii.gz", np.zeros((4, 4, 2), np.uint8))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "tumour": 1}}))
    layout, listing = list_source(tmp_path, {})
    assert layout == "msd" and listing.classes == {0: "background", 1: "tumour"}
    assert [len(s.images) for s in listing.specs] == [2, 2]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "a", "2": "b"}}))
    assert list_msd(tmp_path, {}).classes == {0: "bg", 1: "a", 2: "b"}


def test_detect_slice_axis_rules():
    # largest spacing wins when clearly larger
    assert detect_slice_axis([(200, 180, 10)], [(1.0, 1.0, 8.0)])[0] == 2
    assert detect_slice_axis([(10, 200, 180)], [(8.0, 1.0, 1.0)])[0] == 0
    # identity spacing (ACDC): smallest extent
    assert detect_slice_axis([(256, 216, 10), (232, 256, 8)], [(1.0,) * 3] * 2)[0] == 2
    assert detect_slice_axis([(12, 256, 216)], [None])[0] == 0
    # near-ties (within 10%) go to the last axis: Hippocampus-like 35 x 50 x 36 at 1 mm
    shapes = [(35, 51, 35), (34, 52, 35), (36, 52, 38), (35, 50, 36)]
    assert detect_slice_axis(shapes, [(1.0, 1.0, 1.0)] * 4)[0] == 2
    # the median over volumes decides, so one odd volume cannot flip the dataset
    assert detect_slice_axis([(100, 100, 9)] * 3 + [(5, 100, 100)], [None] * 4)[0] == 2


def test_dicom_series_folder(tmp_path):
    """A DICOM series (one file per slice) written with SimpleITK reads back as (x, y, z)."""
    zyx = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    img = sitk.GetImageFromArray(zyx)
    img.SetSpacing((0.8, 0.9, 3.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.1"
    folder = tmp_path / "series"
    folder.mkdir()
    for k in range(zyx.shape[0]):
        s = img[:, :, k]
        for tag, val in (("0020|000e", uid + ".2"), ("0020|000d", uid + ".3"), ("0008|0060", "MR"),
                         ("0020|0032", f"0\\0\\{3.0 * k}"), ("0020|0013", str(k)),
                         ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "3.0")):
            s.SetMetaData(tag, val)
        writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
        writer.Execute(s)
    raw = read(Ref("dicom", str(folder)))
    np.testing.assert_array_equal(raw.data, zyx.transpose(2, 1, 0))
    np.testing.assert_allclose(raw.spacing, (0.8, 0.9, 3.0))
    assert header(Ref("dicom", str(folder)))[0] == (5, 6, 4)


def _write_dicom_slice(path, plane, position, orientation="1\\0\\0\\0\\1\\0", series="1.2.3.4", instance=0,
                       thickness="5.0", spacing=(0.7, 0.7)):
    img = sitk.GetImageFromArray(plane[None].astype(np.int16))
    img.SetSpacing((spacing[0], spacing[1], 1.0))
    s = img[:, :, 0]
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for tag, val in (("0020|000e", series), ("0020|000d", "1.2.3"), ("0008|0060", "CT"),
                     ("0020|0032", "\\".join(f"{v:g}" for v in position)), ("0020|0013", str(instance)),
                     ("0020|0037", orientation), ("0018|0050", thickness)):
        s.SetMetaData(tag, val)
    w.SetFileName(str(path))
    w.Execute(s)


def test_dicom_folder_is_one_stack_by_position_whatever_the_series_uids(tmp_path):
    """Files with a different series UID each, names and instance numbers out of anatomical
    order: one stack sorted by ImagePositionPatient, z spacing from the positions (3 mm) not
    SliceThickness (5 mm)."""
    folder = tmp_path / "ct"
    folder.mkdir()
    planes = [np.full((6, 5), 10 * k, np.int16) for k in range(4)]
    zs = [30.0, 21.0, 27.0, 24.0]                      # file k lies at zs[k]
    for k, (plane, z) in enumerate(zip(planes, zs)):
        _write_dicom_slice(folder / f"i{k:04d},0000b.dcm", plane, (-10, -20, z), series=f"1.2.3.{k}",
                           instance=3 - k)
    raw = read(Ref("dicom", str(folder)))
    order = np.argsort(zs)                             # anatomical order: 21, 24, 27, 30
    np.testing.assert_array_equal(raw.data, np.stack([planes[k] for k in order]).transpose(2, 1, 0))
    np.testing.assert_allclose(raw.spacing, (0.7, 0.7, 3.0))
    np.testing.assert_allclose(raw.affine[:3, 3], (-10, -20, 21))
    np.testing.assert_allclose(raw.affine[2, 2], 3.0)


def test_dicom_folder_with_several_real_series_is_an_error_naming_them(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k in range(3):
        _write_dicom_slice(folder / f"a{k}.dcm", np.zeros((6, 5)), (0, 0, 3.0 * k), series="1.2.3.10")
    for k in range(2):                                 # a sagittal localiser of another size
        _write_dicom_slice(folder / f"b{k}.dcm", np.zeros((4, 4)), (3.0 * k, 0, 0), series="1.2.3.11",
                           orientation="0\\1\\0\\0\\0\\-1")
    with pytest.raises(AlsegError, match=r"holds 2 DICOM series of different orientation or size "
                                         r"\(3 slice\(s\) 5x6 .*; 2 slice\(s\) 4x4 .*\); put each series"):
        read(Ref("dicom", str(folder)))


def test_dicom_folder_with_two_slices_at_one_position_is_an_error(tmp_path):
    folder = tmp_path / "phases"
    folder.mkdir()
    for k in range(4):                                 # in- and out-phase interleaved at 2 positions
        _write_dicom_slice(folder / f"s{k}.dcm", np.zeros((6, 5)), (0, 0, 4.0 * (k // 2)))
    with pytest.raises(AlsegError, match="lie at the same position: the folder holds more than one series"):
        read(Ref("dicom", str(folder)))
