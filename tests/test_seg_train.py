"""train-seg: MODEL_DIR layout, CPU determinism, resume, ensembles, prediction API, bad inputs."""
import json

import numpy as np
import pytest
import torch

from alseg_cli.errors import AlsegError
from alseg_cli.segmentation import train as train_mod
from alseg_cli.segmentation.predict import enable_mc_dropout, iter_predictions, load_model
from alseg_cli.segmentation.train import default_iterations, train_seg
from alseg_cli.store import DatasetStore, write_dataset

FAST = dict(iterations=6, val_every=3, base_channels=4, progress=False)


def _weights(model_dir, member=0, ck="last"):
    return torch.load(model_dir / f"member{member}" / f"{ck}.pt", weights_only=False)["state_dict"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ensemble_dir(phantom_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "ens"
    train_seg(phantom_store, "all", out, ensemble=2, seed=3, **FAST)
    return out


def test_model_dir_layout_and_manifest(ensemble_dir, phantom_store):
    m = json.loads((ensemble_dir / "manifest.json").read_text())
    assert m["kind"] == "model" and m["model"] == "unet"
    assert m["num_classes"] == 4 and m["size"] == 64 and m["in_channels"] == 1
    assert [mb["seed"] for mb in m["members"]] == [3, 4]
    assert m["best_member"] == int(np.argmax([mb["best_val_dice"] for mb in m["members"]]))
    cfg = json.loads((ensemble_dir / "config.json").read_text())
    assert cfg["base_channels"] == 4 and cfg["model"] == "unet"
    for k in range(2):
        d = ensemble_dir / f"member{k}"
        for name in ("best.pt", "last.pt", "curve.json", "curve.png"):
            assert (d / name).is_file(), name
        curve = json.loads((d / "curve.json").read_text())
        assert [c["iteration"] for c in curve] == [3, 6]
        assert max(c["val_dice"] for c in curve) == pytest.approx(m["members"][k]["best_val_dice"])
    n_train = int((DatasetStore(phantom_store).split == "train").sum())
    assert len(m["labeled"]) == n_train
    assert not list(ensemble_dir.parent.glob(".*partial"))


def test_cpu_determinism_same_seed_same_weights(phantom_store, tmp_path):
    train_seg(phantom_store, "all", tmp_path / "a", seed=7, **FAST)
    train_seg(phantom_store, "all", tmp_path / "b", seed=7, **FAST)
    train_seg(phantom_store, "all", tmp_path / "c", seed=8, **FAST)
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_dmpls_trains_on_scribbles_deterministically(phantom_store, tmp_path):
    m = train_seg(phantom_store, "all", tmp_path / "d1", model="dmpls", seed=1, **FAST)
    train_seg(phantom_store, "all", tmp_path / "d2", model="dmpls", seed=1, **FAST)
    assert m["args"]["supervision"] == "scribble"
    w = _weights(tmp_path / "d1")
    assert any(k.startswith("aux_decoder") for k in w)
    assert _same(w, _weights(tmp_path / "d2"))


def test_resume_after_interruption_gives_same_weights(phantom_store, tmp_path, monkeypatch):
    train_seg(phantom_store, "all", tmp_path / "full", seed=2, **FAST)
    real = train_mod.validation_scores
    calls = {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "validation_scores", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        train_seg(phantom_store, "all", tmp_path / "cut", seed=2, **FAST)
    assert not (tmp_path / "cut").exists() and (tmp_path / ".cut.partial" / "member0" / "last.pt").exists()
    monkeypatch.setattr(train_mod, "validation_scores", real)
    with pytest.raises(AlsegError, match=r"partial state of an interrupted run; pass --resume"):
        train_seg(phantom_store, "all", tmp_path / "cut", seed=2, **FAST)       # never silently discarded
    assert (tmp_path / ".cut.partial" / "member0" / "last.pt").exists()
    train_seg(phantom_store, "all", tmp_path / "cut", seed=2, resume=True, **FAST)
    assert _same(_weights(tmp_path / "full"), _weights(tmp_path / "cut"))


def test_labels_from_selection_manifest_and_id_file(phantom_store, tmp_path):
    store = DatasetStore(phantom_store)
    ids = store.slice_ids[store.indices("train")][:5].tolist()
    sel = tmp_path / "sel.json"
    sel.write_text(json.dumps({"kind": "selection", "labeled": {i: 0 for i in ids}}))
    txt = tmp_path / "ids.txt"
    txt.write_text("\n".join(ids) + "\n")
    a = train_seg(phantom_store, str(sel), tmp_path / "m1", seed=0, **FAST)
    b = train_seg(phantom_store, str(txt), tmp_path / "m2", seed=0, **FAST)
    assert sorted(a["labeled"]) == sorted(ids) == sorted(b["labeled"])
    assert _same(_weights(tmp_path / "m1"), _weights(tmp_path / "m2"))


def test_labels_from_val_or_test_or_another_store_are_refused(phantom_store, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "_train_member", lambda *a, **k: pytest.fail("training started"))
    store = DatasetStore(phantom_store)
    train_ids = store.slice_ids[store.indices("train")][:3].tolist()
    test_id = str(store.slice_ids[store.indices("test")][0])
    with pytest.raises(AlsegError, match=r"1 labelled slice\(s\) are in the test split.*leak"):
        train_seg(phantom_store, json.dumps(train_ids + [test_id]), tmp_path / "m", **FAST)
    sel = {"kind": "selection", "labeled": {i: 0 for i in train_ids},
           "inputs": {"dataset": {"path": "/elsewhere/other.zarr", "sha256": "f" * 64}}}
    with pytest.raises(AlsegError, match=r"made on another dataset store.*--allow-other-dataset"):
        train_seg(phantom_store, json.dumps(sel), tmp_path / "m", **FAST)
    sel["labeled"][test_id] = 0                      # the override never admits evaluation slices
    with pytest.raises(AlsegError, match="test split"):
        train_seg(phantom_store, json.dumps(sel), tmp_path / "m", allow_other_dataset=True, **FAST)
    assert not (tmp_path / "m").exists()


def test_default_iterations_rule():
    assert default_iterations(29, 1454, 500) == int(60000 * 29 / 1454)
    assert default_iterations(1, 1454, 500) == 500


def _store_without_scribbles(path, size=64):
    from alseg_cli.data.phantoms import make_phantoms, phantom_attrs

    vols = []
    for v in make_phantoms(patients=4, size=size, slices=4, seed=1):
        v.scribble = None
        vols.append(v)
    split = {"phantom000": "train", "phantom001": "train", "phantom002": "val", "phantom003": "test"}
    write_dataset(path, vols, size, split, phantom_attrs())
    return path


@pytest.mark.parametrize("labels, options, message", [
    ("[]", {}, "empty"),
    ('["phantom999_frame01:000"]', {}, "not in"),
    ("all", {"val_split": "nope"}, "split 'nope'"),
    ("all", {"model": "unet-resnet50"}, "--backbone-weights"),
    ("all", {"model": "unet", "backbone_weights": "r50.pth"}, "no pretrained backbone.*unet-resnet50"),
    ("all", {"model": "dmpls", "supervision": "full"}, "scribble"),
    ("all", {"size": 32}, "--size 32"),
    ("all", {"model": "nonet"}, "unknown"),
])
def test_bad_inputs_fail_before_training(phantom_store, tmp_path, monkeypatch, labels, options, message):
    monkeypatch.setattr(train_mod, "_train_member", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(AlsegError, match=message):
        train_seg(phantom_store, labels, tmp_path / "m", **{**FAST, **options})
    assert not (tmp_path / "m").exists()


def test_scribbles_missing_and_resume_into_other_class_count(phantom_store, tmp_path, monkeypatch):
    bare = _store_without_scribbles(tmp_path / "bare.zarr")
    with pytest.raises(AlsegError, match="no scribbles"):
        train_seg(bare, "all", tmp_path / "m", model="dmpls", **FAST)
    # a partial run of a 4-class store, resumed on a store with another class count
    partial = tmp_path / ".m.partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"model": "unet", "num_classes": 3, "size": 64,
                                                     "in_channels": 1}))
    with pytest.raises(AlsegError, match="num_classes"):
        train_seg(phantom_store, "all", tmp_path / "m", resume=True, **FAST)


def test_existing_model_dir_needs_force(ensemble_dir, phantom_store):
    with pytest.raises(AlsegError, match="--force"):
        train_seg(phantom_store, "all", ensemble_dir, **FAST)


def test_softmax_predictions_and_batch_alignment(ensemble_dir, phantom_store):
    store = DatasetStore(phantom_store)
    idx = store.indices("val")
    a = torch.cat([p for _, p in iter_predictions([ensemble_dir], store, idx, batch_size=5)], dim=1)
    b = torch.cat([p for _, p in iter_predictions([ensemble_dir], store, idx, batch_size=64)], dim=1)
    assert a.shape == (1, len(idx), 4, 64, 64) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.sum(2), torch.ones(1, len(idx), 64, 64))


def test_ensemble_members_aligned(ensemble_dir, phantom_store):
    store = DatasetStore(phantom_store)
    idx = store.indices("test")[:7]
    (bi, probs), = list(iter_predictions([ensemble_dir], store, idx, mode="ensemble", batch_size=16))
    assert np.array_equal(bi, idx) and probs.shape[0] == 2
    x = torch.from_numpy(store.images(idx))
    for k in range(2):
        net = load_model(ensemble_dir, member=k, device="cpu")
        with torch.no_grad():
            torch.testing.assert_close(probs[k], net(x).softmax(1))
    best = json.loads((ensemble_dir / "manifest.json").read_text())["best_member"]
    (_, soft), = list(iter_predictions([ensemble_dir], store, idx, mode="softmax"))
    torch.testing.assert_close(soft[0], probs[best])


def test_mc_dropout_passes_differ_seeded_and_bn_eval(ensemble_dir, phantom_store):
    store = DatasetStore(phantom_store)
    idx = store.indices("val")[:4]
    run = lambda seed: torch.cat([p for _, p in iter_predictions([ensemble_dir], store, idx, mode="mc",
                                                                  samples=3, seed=seed)], dim=1)
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (3, 4, 4, 64, 64)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a, c)
    net = enable_mc_dropout(load_model(ensemble_dir, device="cpu"))
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    drop = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert bn and not any(m.training for m in bn) and all(m.training for m in drop)
    stats = [m.running_mean.clone() for m in bn]
    for m in drop:
        m.p = 0.0  # with dropout off, an MC pass must equal the plain eval prediction
    x = torch.from_numpy(store.images(idx))
    with torch.no_grad():
        mc = net(x)
        plain = load_model(ensemble_dir, device="cpu")(x)
    torch.testing.assert_close(mc, plain)
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bn))


def test_unet_resnet50_loads_local_backbone_and_trains(phantom_store, tmp_path):
    import torchvision

    from alseg_cli.segmentation.nets import ResNet50UNet

    ref = torchvision.models.resnet50(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r50.pth")
    net = ResNet50UNet(1, 4, backbone_weights=tmp_path / "r50.pth")
    # 3-channel ImageNet stem averaged onto the single grey channel (times 1 channel)
    torch.testing.assert_close(net.stem[0].weight, ref.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(net.layers[3][0].conv1.weight, ref.layer4[0].conv1.weight)
    m = train_seg(phantom_store, "all", tmp_path / "r", model="unet-resnet50", backbone_weights=tmp_path / "r50.pth",
                  iterations=2, val_every=2, progress=False, batch_size=2)
    assert m["model"] == "unet-resnet50"
    # its own reference recipe unless told otherwise: Adam 1e-4 with gradient clipping
    assert (m["args"]["optimizer"], m["args"]["lr"], m["args"]["clip_grad"]) == ("adam", 1e-4, 1.0)
    assert load_model(tmp_path / "r", device="cpu")(torch.zeros(1, 1, 64, 64)).shape == (1, 4, 64, 64)
    (tmp_path / "bad.pth").write_text("not weights")
    with pytest.raises(AlsegError, match="not a torch state dict"):
        ResNet50UNet(1, 4, backbone_weights=tmp_path / "bad.pth")


def test_cli_logs_plain_validation_lines_when_stderr_is_not_a_terminal(phantom_store, tmp_path):
    """Under nohup or a Makefile the live bar cannot render: one line per validation instead.
    --workers sets (and the manifest records) torch's CPU threads."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "alseg_cli", "train-seg", str(phantom_store), "--labels", "all",
                        "-o", str(tmp_path / "m"), "--iterations", "4", "--val-every", "2",
                        "--base-channels", "4", "--device", "cpu", "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["args"]["threads"] == 1   # the thread count changes a model: recorded
    lines = [ln for ln in r.stderr.splitlines() if "val Dice" in ln]
    assert len(lines) == 2 and "it 2/4" in lines[0] and "it 4/4" in lines[1]
    curve = json.loads((tmp_path / "m" / "member0" / "curve.json").read_text())
    assert f"val Dice {curve[-1]['val_dice']:.3f}" in lines[1]
    assert json.loads(r.stdout)["kind"] == "model"


def test_recipe_defaults_come_from_the_network_then_the_paper(phantom_store, tmp_path, monkeypatch):
    from alseg_cli.segmentation.recipe import resolve_recipe

    assert resolve_recipe(None) == {"optimizer": "sgd", "lr": 0.01, "clip_grad": 0.0}
    assert resolve_recipe({"optimizer": "adam", "lr": 1e-4, "clip_grad": 1.0}, lr=3e-4) == \
        {"optimizer": "adam", "lr": 3e-4, "clip_grad": 1.0}
    clipped = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, v: clipped.append(v) or real(p, v))
    m = train_seg(phantom_store, "all", tmp_path / "u", **FAST)
    assert (m["args"]["optimizer"], m["args"]["lr"], m["args"]["clip_grad"]) == ("sgd", 0.01, 0.0) and not clipped
    train_seg(phantom_store, "all", tmp_path / "c", clip_grad=0.5, **FAST)
    assert clipped == [0.5] * FAST["iterations"]
    with pytest.raises(AlsegError, match="--clip-grad"):
        train_seg(phantom_store, "all", tmp_path / "x", clip_grad=-1.0, **FAST)


def test_init_warm_starts_each_member_from_its_counterpart(ensemble_dir, phantom_store, tmp_path):
    """--init: member m starts from the init model's member m (best checkpoint), or its best member
    where it has fewer; with a zero learning rate the trained parameters are exactly those."""
    still = dict(FAST, iterations=1, val_every=1, optimizer="sgd", lr=1e-30)
    m = train_seg(phantom_store, "all", tmp_path / "warm", ensemble=3, seed=3, init=ensemble_dir, **still)
    assert m["args"]["init"] == str(ensemble_dir)
    best = json.loads((ensemble_dir / "manifest.json").read_text())["best_member"]
    params = [k for k, v in _weights(ensemble_dir).items() if v.is_floating_point() and "running" not in k]
    for member, source in ((0, 0), (1, 1), (2, best)):
        got, want = _weights(tmp_path / "warm", member), _weights(ensemble_dir, source, "best")
        assert all(torch.allclose(got[k], want[k], atol=0, rtol=1e-6) for k in params), member
    cold = train_seg(phantom_store, "all", tmp_path / "cold", seed=3, **still)
    assert "init" not in cold["args"]
    assert not all(torch.equal(_weights(tmp_path / "cold")[k], _weights(tmp_path / "warm")[k]) for k in params)
    with pytest.raises(AlsegError, match="base_channels is 4, this run's 8; a warm start needs the same network"):
        train_seg(phantom_store, "all", tmp_path / "wide", init=ensemble_dir, **dict(still, base_channels=8))
    with pytest.raises(AlsegError, match="not a model directory"):
        train_seg(phantom_store, "all", tmp_path / "none", init=tmp_path, **still)
    assert not (tmp_path / "wide").exists() and not (tmp_path / ".wide.partial").exists()
