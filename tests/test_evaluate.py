"""evaluate: native-size metrics equal a recomputation from its own NIfTI predictions; CLI; bad inputs."""
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from alseg_cli.cli.main import app
from alseg_cli.errors import AlsegError
from alseg_cli.metrics.dice import dice_per_class
from alseg_cli.metrics.hd95 import hd95_per_class
from alseg_cli.segmentation.evaluate import evaluate, from_source_orientation, to_source_orientation
from alseg_cli.segmentation.train import train_seg
from alseg_cli.store import DatasetStore

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(phantom_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalmodel") / "model"
    # enough iterations for non-trivial predictions (some classes found, some missed)
    train_seg(phantom_store, "all", out, iterations=40, val_every=20, base_channels=4, progress=False, seed=0)
    return out


def test_orientation_round_trip():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    for axis in range(3):
        b = to_source_orientation(a, axis)
        assert b.shape[axis] == 2
        assert np.array_equal(from_source_orientation(b, axis), a)
    assert to_source_orientation(a, 2).shape == (3, 4, 2)


def test_evaluate_equals_recomputation_from_nifti(phantom_store, model_dir, tmp_path):
    res = evaluate(phantom_store, model_dir, tmp_path / "eval.json", predictions=tmp_path / "pred", progress=False)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["kind"] == "evaluation" and saved["mean_dice"] == pytest.approx(res["mean_dice"])
    store = DatasetStore(phantom_store)
    info = {v["name"]: v for v in store.volume_info}
    test_volumes = sorted(set(store.volumes[store.indices("test")].tolist()))
    assert sorted(r["volume"] for r in res["per_volume"]) == test_volumes
    dices = []
    for row in res["per_volume"]:
        vi = info[row["volume"]]
        img = nib.load(str(tmp_path / "pred" / f"{row['volume']}.nii.gz"))
        np.testing.assert_allclose(img.affine, np.asarray(vi["affine"]))
        pred = from_source_orientation(np.asarray(img.dataobj), vi.get("slice_axis", 2))
        native = store.native_mask(vi["index"])
        assert pred.shape == native.shape == tuple(vi["shape"])
        d = dice_per_class(pred, native, [1, 2, 3])
        h, h_max = hd95_per_class(pred, native, [1, 2, 3], vi["spacing"])
        np.testing.assert_allclose(row["dice"], d)
        np.testing.assert_allclose(row["hd95"], h, equal_nan=True)
        np.testing.assert_allclose(row["hd95_max"], h_max, equal_nan=True)
        dices.append(d)
    per_class = np.mean(dices, axis=0)
    assert [res["per_class"][n]["dice"] for n in res["classes"]] == pytest.approx(per_class.tolist())
    assert res["mean_dice"] == pytest.approx(float(per_class.mean()))
    # per-slice 2D Dice, recomputed from the same NIfTI predictions
    test_ids = set(store.slice_ids[store.indices("test")].tolist())
    assert {r["slice_id"] for r in res["per_slice"]} == test_ids and len(res["per_slice"]) == len(test_ids)
    for r in res["per_slice"][:10]:
        vol, z = r["slice_id"].rsplit(":", 1)
        vi = info[vol]
        pred = from_source_orientation(np.asarray(nib.load(str(tmp_path / "pred" / f"{vol}.nii.gz")).dataobj),
                                       vi.get("slice_axis", 2))
        np.testing.assert_allclose(r["dice"], dice_per_class(pred[int(z)], store.native_mask(vi["index"])[int(z)],
                                                             [1, 2, 3]))


def test_bootstrap_by_slice_reads_per_slice_scores(phantom_store, model_dir, tmp_path):
    from alseg_cli.metrics.report import unit_scores

    res = evaluate(phantom_store, model_dir, progress=False, hd95=False)
    names, scores = unit_scores(res, "slice")
    assert len(names) == len(res["per_slice"]) and np.all((scores >= 0) & (scores <= 1))
    assert res["hd95_unit"] == "mm"


def test_cli_train_and_evaluate_stdout_is_one_manifest(phantom_store, model_dir, tmp_path):
    r = runner.invoke(app, ["evaluate", str(phantom_store), "--model", str(model_dir), "--split", "val",
                            "-o", str(tmp_path / "e.json"), "--no-hd95"])
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(line) == 1 and json.loads(line[0])["split"] == "val"
    r = runner.invoke(app, ["evaluate", str(phantom_store), "--model", str(model_dir), "-o", str(tmp_path / "e.json")])
    assert r.exit_code != 0 and "--force" in r.output
    r = runner.invoke(app, ["train-seg", str(phantom_store), "--labels", "[]", "-o", str(tmp_path / "m")])
    assert r.exit_code != 0 and "empty" in r.output and not (tmp_path / "m").exists()


def test_evaluate_bad_inputs(phantom_store, model_dir, tmp_path):
    from alseg_cli.prep import write_phantom_store

    with pytest.raises(AlsegError, match="split 'nope'"):
        evaluate(phantom_store, model_dir, split="nope", progress=False)
    with pytest.raises(AlsegError, match="not a model directory"):
        evaluate(phantom_store, tmp_path, progress=False)
    small = tmp_path / "small.zarr"
    write_phantom_store(small, patients=3, size=32, slices=4)
    with pytest.raises(AlsegError, match="size=64"):
        evaluate(small, model_dir, progress=False)
    assert not (tmp_path / "eval.json").exists()


def test_class_absent_from_the_whole_split_is_flagged_and_left_out(tmp_path):
    from alseg_cli.metrics.report import unit_scores
    from alseg_cli.prep import run_prep

    rng = np.random.default_rng(3)
    im, ma = tmp_path / "im", tmp_path / "ma"
    im.mkdir(); ma.mkdir()
    for i in range(4):
        lab = np.zeros((16, 16, 3), np.uint8)
        lab[3:9, 3:9] = 1
        lab[9:13, 9:13] = 2
        img = (lab * 0.4 + rng.normal(0, 0.05, lab.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(im / f"p{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(ma / f"p{i}_seg.nii.gz"))
    store = tmp_path / "d.zarr"
    run_prep(None, store, size=16, split="train=0.5,test=0.5", images=im, masks=ma, classes="bg,a,b,c")
    model = tmp_path / "m"
    train_seg(store, "all", model, iterations=4, val_every=4, base_channels=4, progress=False, seed=0,
              val_split="train")
    res = evaluate(store, model, progress=False, hd95=False)
    assert res["absent_classes"] == ["c"] and res["per_class"]["c"]["absent"]
    assert res["mean_dice"] == pytest.approx(np.mean([res["per_class"][n]["dice"] for n in ("a", "b")]))
    names, scores = unit_scores(res)
    per_vol = [np.mean(r["dice"][:2]) for r in sorted(res["per_volume"], key=lambda r: r["volume"])]
    np.testing.assert_allclose(scores, per_vol)
