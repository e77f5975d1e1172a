"""`alseg pretrain`: tiny runs on the phantom store (val split: 12 slices, 32 px), resume,
bad options, G and per-batch labels, and the seeded augmentations."""
import json

import numpy as np
import pytest
import torch

from alseg_cli.data.augment import AugmentConfig, augment
from alseg_cli.encoders import pretrain as pt
from alseg_cli.errors import AlsegError

TINY = dict(split="val", size=16, seed=3, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine's cores are shared (one thread is fastest here); other test modules set
    their own count, so each test here sets its own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_one_epoch_writes_encoder_dir(phantom_store, tmp_path):
    out = tmp_path / "enc"
    m = pt.pretrain(phantom_store, out, epochs=1, **TINY)
    for name in ("encoder.pt", "config.json", "loss.json", "loss.png", "manifest.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch"] == "resnet18" and cfg["in_channels"] == 1 and cfg["size"] == 16
    assert cfg["groups"] == ["patient", "volume"] and cfg["weights"] == [1.0, 0.05, 0.35, 0.0]
    assert cfg["tau"] == 0.5 and cfg["batch_size"] == 9
    # val split: one patient, two volumes of 6 slices
    assert cfg["G"]["patient"] == 12.0 and cfg["G"]["volume"] == 6.0
    assert m["kind"] == "encoder" and m["epochs_done"] == 1 and np.isfinite(m["final_loss"])
    assert m["args"]["threads"] == 1       # CPU threads change float rounding: recorded, as train-seg does
    assert json.loads((out / "manifest.json").read_text())["kind"] == "encoder"
    state = torch.load(out / "encoder.pt", weights_only=True)
    assert state["trunk.conv1.weight"].shape == (64, 1, 7, 7) and state["head.2.weight"].shape == (64, 512)
    with pytest.raises(AlsegError, match="--resume"):
        pt.pretrain(phantom_store, out, epochs=1, **TINY)


def test_resume_after_interruption_matches_uninterrupted(phantom_store, tmp_path, monkeypatch):
    full = pt.pretrain(phantom_store, tmp_path / "full", epochs=2, groups="slice,volume,patient", **TINY)
    real = pt.group_batches
    calls = {"n": 0}

    def dies_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt   # as if killed after epoch 1's checkpoint
        return real(*a, **k)
    monkeypatch.setattr(pt, "group_batches", dies_in_epoch_two)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(phantom_store, out, epochs=2, groups="slice,volume,patient", **TINY)
    assert (out / "checkpoint.pt").exists() and not (out / "manifest.json").exists()
    monkeypatch.setattr(pt, "group_batches", real)
    with pytest.raises(AlsegError, match="other settings"):
        pt.pretrain(phantom_store, out, epochs=2, groups="volume", resume=True, **TINY)
    resumed = pt.pretrain(phantom_store, out, epochs=2, groups="slice,volume,patient", resume=True, **TINY)
    a = json.loads((tmp_path / "full" / "loss.json").read_text())["history"]
    b = json.loads((out / "loss.json").read_text())["history"]
    assert [h["epoch"] for h in b] == [1, 2] and [h["threads"] for h in b] == [1, 1]
    assert b[1]["loss"] == pytest.approx(a[1]["loss"], rel=1e-4)
    assert resumed["config"]["weights"] == [1.0, 0.05, 0.35, 0.025]
    assert full["final_loss"] == pytest.approx(resumed["final_loss"], rel=1e-4)


def test_bad_options(phantom_store, tmp_path):
    with pytest.raises(AlsegError, match="unknown group"):
        pt.pretrain(phantom_store, tmp_path / "a", groups="frames", **TINY)
    with pytest.raises(AlsegError, match="--groups does not"):
        pt.pretrain(phantom_store, tmp_path / "b", groups="volume", weights=[1, 0.1, 0.3, 0], **TINY)
    with pytest.raises(AlsegError, match="--preset"):
        pt.pretrain(phantom_store, tmp_path / "c", preset="fast", **TINY)
    with pytest.raises(AlsegError, match="split"):
        pt.pretrain(phantom_store, tmp_path / "d", epochs=1, **{**TINY, "split": "nope"})
    assert pt.parse_groups("none") == [] and pt.parse_groups("volume,patient") == ["patient", "volume"]


def test_group_sizes_and_slice_labels():
    pat = np.array([0, 0, 0, 0, 0, 1])
    vol = np.array([0, 0, 0, 1, 1, 2])
    pos = np.array([0, 1, 2, 0, 1, 0])
    G = pt.group_sizes(pat, vol, pos)
    assert G["patient"] == 3.0 and G["volume"] == 2.0
    assert G["slice"] == pytest.approx(((3 * 3 - 2) + (3 * 2 - 2) + 1) / 6)
    # tuples of 2 (slice grouping): (0, 1) adjacent, (5, 5) one-slice volume, (3, 0) not adjacent
    lab = pt.batch_labels([0, 1, 5, 5, 3, 0], 2, pat, vol, pos, ["slice"])["slice"].tolist()
    assert lab[0] == lab[1] == 0 and lab[2] == lab[3] == 1 and lab[4] == 2
    assert lab[5] not in (lab[0], lab[2], lab[4])


def test_augment_seeded_and_identity():
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a, b, c = augment(x, g(1)), augment(x, g(1)), augment(x, g(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    ident = AugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, degrees=0, translate=0,
                          scale=(1, 1), shear=0, blur_sigma=(1e-3, 1e-3), erase_p=0)
    assert torch.allclose(augment(x, g(0), ident), x, atol=1e-5)
    flip = AugmentConfig(**{**ident.__dict__, "flip_p": 1.0})
    assert torch.allclose(augment(x, g(0), flip), x.flip(-1), atol=1e-5)
    erase = AugmentConfig(**{**ident.__dict__, "erase_p": 1.0})
    ones = torch.ones(3, 1, 16, 16)
    y = augment(ones, g(0), erase)
    assert ((y == 0).flatten(1).sum(1) > 0).all() and ((y == 1).flatten(1).sum(1) > 0).all()
    blur = AugmentConfig(**{**ident.__dict__, "blur_sigma": (2.0, 2.0)})
    assert torch.allclose(augment(ones, g(0), blur), ones, atol=1e-5)   # blur keeps constants


def test_resume_with_force_continues_a_checkpoint_and_starts_over_without_one(phantom_store, tmp_path, monkeypatch):
    """What `loop` relies on: force + resume never refuses, and never throws away finished epochs."""
    out = tmp_path / "enc"
    pt.pretrain(phantom_store, out, epochs=1, **TINY)
    epochs_run = []
    real = pt.group_batches

    def counting(*a, **k):
        epochs_run.append(1)
        return real(*a, **k)
    monkeypatch.setattr(pt, "group_batches", counting)
    m = pt.pretrain(phantom_store, out, epochs=2, force=True, resume=True, **TINY)
    assert m["epochs_done"] == 2 and len(epochs_run) == 1          # epoch 1 came from the checkpoint
    (out / "checkpoint.pt").unlink()
    (out / "stray.txt").write_text("left by a killed run")
    m = pt.pretrain(phantom_store, out, epochs=1, force=True, resume=True, **TINY)
    assert m["epochs_done"] == 1 and len(epochs_run) == 2 and not (out / "stray.txt").exists()
