"""CHAOS as released, built in code: the release's mask pairing (not slice positions), grey
levels to classes, anatomical stacking, and the errors."""
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from alseg_cli.api import prep
from alseg_cli.errors import AlsegError
from alseg_cli.store import DatasetStore

SIZE = 16


def _slice(path, plane, z, instance):
    img = sitk.GetImageFromArray(plane[None].astype(np.int16))
    s = img[:, :, 0]
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for tag, val in (("0020|000e", f"1.2.3.{instance}"), ("0020|000d", "1.2.3"), ("0008|0060", "CT"),
                     ("0020|0032", f"0\\0\\{z:g}"), ("0020|0013", str(instance)),
                     ("0020|0037", "1\\0\\0\\0\\1\\0")):
        s.SetMetaData(tag, val)
    w.SetFileName(str(path))
    w.Execute(s)


def _marked(k):
    """Slice k's image (a bright square in column block k) and the mask over that square."""
    plane = np.zeros((SIZE, SIZE), np.int16)
    plane[4:8, 3 * k:3 * k + 3] = 1000 + 100 * k           # location and brightness name the file
    return plane, (plane > 0)


# file index k lies at ZS[k]: position order (21, 24, 27, 30) is not index order
ZS = [30.0, 21.0, 27.0, 24.0]


def _ct_tree(root, patient="1"):
    d = root / "CT" / patient
    (d / "DICOM_anon").mkdir(parents=True)
    (d / "Ground").mkdir()
    for k, z in enumerate(ZS):
        plane, mask = _marked(k)
        _slice(d / "DICOM_anon" / f"i{k:04d},0000b.dcm", plane, z, instance=k + 7)
        Image.fromarray((mask * 255).astype(np.uint8)).save(d / "Ground" / f"liver_GT_{k:03d}.png")
    return d


def _each_mask_on_its_square(store):
    for i in range(len(store)):
        img, mask = store.images([i])[0, 0], store.masks([i])[0]
        assert mask.any() and img[mask > 0].min() > img[mask == 0].max()


def test_ct_masks_pair_by_file_index_and_stack_by_position(tmp_path):
    for p in ("1", "2", "5"):
        _ct_tree(tmp_path / "Train_Sets", p)
    prep(tmp_path / "Train_Sets" / "CT", tmp_path / "ct.zarr", size=SIZE, split="train=1", normalize=False,
         progress=False)
    store = DatasetStore(tmp_path / "ct.zarr")
    assert store.attrs["classes"] == {"0": "background", "1": "liver"} and store.attrs["source"]["kind"] == "chaos"
    assert sorted(set(store.patients)) == ["ct01", "ct02", "ct05"]
    _each_mask_on_its_square(store)
    # anatomical order: the stored z order follows the positions 21, 24, 27, 30 = files 1, 3, 2, 0
    files = [int(round((store.images([i]).max() - 1000) / 100)) for i in store.volume_slices("ct01")]
    assert files == [1, 3, 2, 0]


def test_pairing_by_position_would_misplace_the_masks():
    """The tree really is a trap: mask k on the k-th slice by position misses its square."""
    by_position = np.argsort(ZS)
    assert any(by_position[k] != k for k in range(len(ZS)))


def test_ct_count_mismatch_and_both_modalities_are_errors(tmp_path):
    d = _ct_tree(tmp_path / "Train_Sets")
    (d / "Ground" / "liver_GT_003.png").unlink()
    with pytest.raises(AlsegError, match=r"Ground: 3 mask PNG\(s\) for 4 DICOM slice\(s\)"):
        prep(tmp_path / "Train_Sets" / "CT", tmp_path / "bad.zarr", size=SIZE, split="train=1", progress=False)
    assert not (tmp_path / "bad.zarr").exists()
    _ct_tree(tmp_path / "both")
    _mr_tree(tmp_path / "both")
    with pytest.raises(AlsegError, match="holds CHAOS CT and MR"):
        prep(tmp_path / "both", tmp_path / "b.zarr", size=SIZE, split="train=1", progress=False)


def _mr_tree(root, patient="2", grey_bad=False):
    """T2SPIR with masks named after their DICOM stems; T1DUAL with in/out phase sharing Ground
    named after the in-phase stems. Organ k of MR_GREYS in slice k's square."""
    d = root / "MR" / patient
    levels = (63, 126, 189, 252)
    for seq, phases in (("T2SPIR", [None]), ("T1DUAL", ["InPhase", "OutPhase"])):
        ground = d / seq / "Ground"
        ground.mkdir(parents=True)
        for ph_i, phase in enumerate(phases):
            dd = d / seq / "DICOM_anon" / (phase or "")
            dd.mkdir(parents=True, exist_ok=True)
            for k, z in enumerate(ZS):
                plane, mask = _marked(k)
                stem = f"IMG-0004-{2 * k + ph_i + 1:05d}"          # phases interleave in numbering
                _slice(dd / f"{stem}.dcm", plane, z, instance=k)
                if ph_i == 0:
                    grey = (mask * (levels[k] + (3 if k == 1 else 0))).astype(np.uint8)  # within +-10
                    if grey_bad and k == 2:
                        grey[mask] = 100
                    Image.fromarray(grey).save(ground / f"{stem}.png")
    return d


def test_mr_grey_levels_map_to_organs_and_phases_pair(tmp_path):
    _mr_tree(tmp_path / "Train_Sets")
    prep(tmp_path / "Train_Sets" / "MR", tmp_path / "mr.zarr", size=SIZE, split="train=1", progress=False)
    store = DatasetStore(tmp_path / "mr.zarr")
    assert sorted(set(store.volumes)) == ["mr02_t1in", "mr02_t1out", "mr02_t2"]
    assert set(store.patients) == {"mr02"}
    _each_mask_on_its_square(store)
    for vol in ("mr02_t1in", "mr02_t1out", "mr02_t2"):
        idx = store.volume_slices(vol)
        classes = [int(store.masks([i])[0].max()) for i in idx]
        assert classes == [2, 4, 3, 1]      # files 1, 3, 2, 0 in anatomical order -> organs k + 1


def test_mr_unknown_grey_value_is_refused(tmp_path):
    _mr_tree(tmp_path / "Train_Sets", grey_bad=True)
    with pytest.raises(AlsegError, match=r"grey value 100 is not one of CHAOS's mask levels 0, 63, 126, 189, 252"):
        prep(tmp_path / "Train_Sets" / "MR", tmp_path / "mr.zarr", size=SIZE, split="train=1", progress=False)
