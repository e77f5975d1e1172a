"""`alseg embed`: the SPEC kinds against direct computations, external imports and
their errors, the CLI's stdout manifest."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
import zarr
from typer.testing import CliRunner

from alseg_cli.cli.main import app
from alseg_cli.encoders.embed import SPEC_KINDS, embed, spec_kind
from alseg_cli.encoders.models import GCLEncoder
from alseg_cli.errors import AlsegError
from alseg_cli.store import DatasetStore, EmbeddingsStore

torch.set_num_threads(1)
VAL = dict(split="val", device="cpu", progress=False)


def val_images(store_path, size=None):
    s = DatasetStore(store_path)
    x = torch.from_numpy(s.images(s.indices("val")))
    if size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return s, x


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    torch.manual_seed(0)
    model = GCLEncoder("resnet18", 1)
    torch.save(model.state_dict(), d / "encoder.pt")
    (d / "config.json").write_text(json.dumps({"arch": "resnet18", "in_channels": 1, "size": 32,
                                               "groups": ["patient", "volume"], "weights": [1, .05, .35, 0],
                                               "tau": 0.5}))
    return d


def test_registry_lists_every_kind():
    assert set(SPEC_KINDS.names()) == {"alseg", "torchvision", "torchscript", "export", "pixels",
                                         "external"}
    for name in SPEC_KINDS:
        assert SPEC_KINDS.describe(name)


def test_alseg_encoder_dir(phantom_store, encoder_dir, tmp_path):
    m = embed(phantom_store, tmp_path / "e.zarr", encoder=str(encoder_dir), **VAL)
    emb = EmbeddingsStore(tmp_path / "e.zarr")
    s, x = val_images(phantom_store, 32)
    model = GCLEncoder("resnet18", 1)
    model.load_state_dict(torch.load(encoder_dir / "encoder.pt", weights_only=True))
    with torch.no_grad():
        expect = model.eval().trunk(x).numpy()
    assert emb.vectors().shape == (12, 512) and emb.vectors().dtype == np.float32
    np.testing.assert_allclose(emb.vectors(), expect, rtol=1e-4, atol=1e-5)
    assert list(emb.slice_ids) == list(s.slice_ids[s.indices("val")])
    enc = emb.attrs["encoder"]
    assert enc["kind"] == "alseg" and enc["gcl"] is True and enc["groups"] == ["patient", "volume"]
    assert emb.attrs["dataset"] == str(phantom_store.resolve())
    assert m["kind"] == "embeddings" and m["outputs"]["embeddings"] == str((tmp_path / "e.zarr").resolve())
    assert m["inputs"]["dataset"]["path"] == str(phantom_store.resolve())


def test_torchvision_state_dict_sums_rgb(phantom_store, tmp_path):
    torch.manual_seed(1)
    rgb = torchvision.models.resnet18(weights=None)
    torch.save(rgb.state_dict(), tmp_path / "r18.pth")
    embed(phantom_store, tmp_path / "t.zarr", encoder=f"resnet18:{tmp_path / 'r18.pth'}", half=True, **VAL)
    emb = EmbeddingsStore(tmp_path / "t.zarr")
    _, x = val_images(phantom_store)
    rgb.fc = torch.nn.Identity()
    with torch.no_grad():   # summing conv1 over RGB == the RGB net on a replicated grey image
        expect = rgb.eval()(x.repeat(1, 3, 1, 1)).numpy()
    v = emb.vectors()
    assert v.dtype == np.float16 and v.shape == (12, 512)
    np.testing.assert_allclose(v.astype(np.float32), expect, rtol=2e-3, atol=2e-3)
    assert emb.attrs["encoder"]["kind"] == "torchvision"


def test_torchscript_and_pixels(phantom_store, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), tmp_path / "net.pt")
    with pytest.raises(AlsegError, match=r"returned \(\d+, 3, 2, 2\).*must return \(N, D\).*--flatten"):
        embed(phantom_store, tmp_path / "s.zarr", encoder=str(tmp_path / "net.pt"), **VAL)
    assert not (tmp_path / "s.zarr").exists()
    embed(phantom_store, tmp_path / "s.zarr", encoder=str(tmp_path / "net.pt"), flatten=True, **VAL)
    _, x = val_images(phantom_store)
    with torch.no_grad():
        expect = net(x).flatten(1).numpy()
    np.testing.assert_allclose(EmbeddingsStore(tmp_path / "s.zarr").vectors(), expect, rtol=1e-5, atol=1e-6)
    m = embed(phantom_store, tmp_path / "p.zarr", encoder="pixels", pixels_size=8, device="cpu", progress=False)
    s = DatasetStore(phantom_store)
    area = F.interpolate(torch.from_numpy(s.images()), size=(8, 8), mode="area").flatten(1).numpy()
    np.testing.assert_allclose(EmbeddingsStore(tmp_path / "p.zarr").vectors(), area, rtol=1e-5, atol=1e-6)
    assert m["num"] == len(s) and m["dim"] == 64 and m["encoder"]["kind"] == "pixels"


def test_torch_export_program_and_clean_stderr(phantom_store, tmp_path):
    import subprocess
    import sys

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    program = torch.export.export(net.eval(), (torch.zeros(2, 1, 64, 64),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "net.pt2")
    m = embed(phantom_store, tmp_path / "x.zarr", encoder=str(tmp_path / "net.pt2"), **VAL)
    _, x = val_images(phantom_store)
    with torch.no_grad():
        expect = net(x).numpy()
    np.testing.assert_allclose(EmbeddingsStore(tmp_path / "x.zarr").vectors(), expect, rtol=1e-5, atol=1e-6)
    assert m["encoder"]["kind"] == "export"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), tmp_path / "net.pt")
    exe = str(Path(sys.executable).with_name("alseg"))
    r = subprocess.run([exe, "embed", str(phantom_store), "--encoder", str(tmp_path / "net.pt"), "--split", "val",
                        "-o", str(tmp_path / "s.zarr"), "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0 and "Warning" not in r.stderr and "deprecated" not in r.stderr, r.stderr


def test_spec_errors(phantom_store, encoder_dir, tmp_path):
    out = tmp_path / "x.zarr"
    with pytest.raises(AlsegError, match="needs a local weights file"):
        embed(phantom_store, out, encoder="resnet50", **VAL)
    with pytest.raises(AlsegError, match="not found"):
        embed(phantom_store, out, encoder=f"resnet18:{tmp_path / 'none.pth'}", **VAL)
    torch.save({"a": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(AlsegError, match="conv1"):
        embed(phantom_store, out, encoder=f"resnet18:{tmp_path / 'bad.pth'}", **VAL)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(AlsegError, match="TorchScript"):
        embed(phantom_store, out, encoder=str(tmp_path / "junk.pt"), **VAL)
    with pytest.raises(AlsegError, match="not an encoder directory"):
        spec_kind("nowhere/at/all")
    half = tmp_path / "unfinished"
    half.mkdir()
    (half / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(AlsegError, match="--resume"):
        embed(phantom_store, out, encoder=str(half), **VAL)
    with pytest.raises(AlsegError, match="exactly one"):
        embed(phantom_store, out, **VAL)
    embed(phantom_store, out, encoder="pixels", **VAL)
    with pytest.raises(AlsegError, match="--force"):
        embed(phantom_store, out, encoder="pixels", **VAL)


# ---------- external vectors ----------

@pytest.fixture()
def ext(phantom_store):
    s = DatasetStore(phantom_store)
    ids = list(s.slice_ids)
    vec = np.random.default_rng(0).normal(size=(len(ids), 5)).astype(np.float32)
    return s, ids, vec


def imported(store, path, tmp_path, **kw):
    out = tmp_path / "imp.zarr"
    embed(store.path, out, from_file=path, device="cpu", progress=False, force=True, **kw)
    e = EmbeddingsStore(out)
    return list(e.slice_ids), e.vectors()


def test_external_formats(ext, tmp_path):
    s, ids, vec = ext
    perm = np.random.default_rng(1).permutation(len(ids))
    np.savez(tmp_path / "a.npz", ids=np.array(ids)[perm], vectors=vec[perm])   # shuffled rows
    got_ids, got = imported(s, tmp_path / "a.npz", tmp_path)
    assert got_ids == ids and np.array_equal(got, vec)
    np.save(tmp_path / "a.npy", vec[perm])
    (tmp_path / "ids.txt").write_text("\n".join(np.array(ids)[perm]) + "\n")
    assert np.array_equal(imported(s, tmp_path / "a.npy", tmp_path, ids_file=tmp_path / "ids.txt")[1], vec)
    np.save(tmp_path / "b.npy", vec)
    assert np.array_equal(imported(s, tmp_path / "b.npy", tmp_path, assume_order=True)[1], vec)
    rows = [",".join([i] + [repr(float(v)) for v in r]) for i, r in zip(ids, vec)]
    (tmp_path / "h.csv").write_text("id,a,b,c,d,e\n" + "\n".join(rows))
    (tmp_path / "n.csv").write_text("\n".join(rows[::-1]))
    for name in ("h.csv", "n.csv"):
        np.testing.assert_allclose(imported(s, tmp_path / name, tmp_path)[1], vec, rtol=1e-6)
    lightly = ["filenames," + ",".join(f"embedding_{k}" for k in range(5)) + ",labels"]
    lightly += [",".join([i.replace(":", "_") + ".png"] + [repr(float(v)) for v in r] + ["0"])
                for i, r in zip(ids, vec)]
    (tmp_path / "l.csv").write_text("\n".join(lightly))
    np.testing.assert_allclose(imported(s, tmp_path / "l.csv", tmp_path)[1], vec, rtol=1e-6)
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("embeddings", data=vec[perm])
    with warnings.catch_warnings():     # a user's group with fixed-width ids, as numpy writes them
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        g.create_array("ids", data=np.array(ids)[perm].astype(str))
    assert np.array_equal(imported(s, tmp_path / "g.zarr", tmp_path)[1], vec)
    zarr.create_array(str(tmp_path / "arr.zarr"), data=vec)
    assert np.array_equal(imported(s, tmp_path / "arr.zarr", tmp_path, assume_order=True)[1], vec)
    # a split only needs that split's vectors
    val = s.indices("val")
    np.savez(tmp_path / "v.npz", ids=np.array(ids)[val], vectors=vec[val])
    assert np.array_equal(imported(s, tmp_path / "v.npz", tmp_path, split="val")[1], vec[val])


def test_external_errors(ext, tmp_path):
    s, ids, vec = ext
    cases = {
        "missing": (dict(ids=np.array(ids[1:]), vectors=vec[1:]), "have no vector"),
        "dup": (dict(ids=np.array(ids + ids[:1]), vectors=np.vstack([vec, vec[:1]])), "duplicated"),
        "unknown": (dict(ids=np.array(ids[:-1] + ["nobody:000"]), vectors=vec), "not slices of the dataset"),
        "nan": (dict(ids=np.array(ids), vectors=np.where(np.arange(5) == 2, np.nan, vec)), "NaN or inf"),
        "dims": (dict(ids=np.array(ids), vectors=vec[:, 0]), "2-D"),
        "count": (dict(ids=np.array(ids[:3]), vectors=vec), "must match"),
        "novec": (dict(ids=np.array(ids)), "no vectors"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(AlsegError, match=message):
            imported(s, tmp_path / f"{name}.npz", tmp_path)
    np.save(tmp_path / "a.npy", vec)
    with pytest.raises(AlsegError, match="--assume-order"):
        imported(s, tmp_path / "a.npy", tmp_path)
    (tmp_path / "r.csv").write_text(f"{ids[0]},1,2\n{ids[1]},1\n")
    with pytest.raises(AlsegError, match="different numbers"):
        imported(s, tmp_path / "r.csv", tmp_path)
    (tmp_path / "t.csv").write_text(f"{ids[0]},1,2\n{ids[1]},1,x\n")
    with pytest.raises(AlsegError, match="line 2: 'x' is not a number"):
        imported(s, tmp_path / "t.csv", tmp_path)
    (tmp_path / "f.parquet").write_bytes(b"")
    with pytest.raises(AlsegError, match="unsupported format"):
        imported(s, tmp_path / "f.parquet", tmp_path)
    assert not (tmp_path / "imp.zarr").exists()   # nothing half-written


def test_cli_manifest_on_stdout_and_one_line_errors(phantom_store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.zarr"
    res = runner.invoke(app, ["embed", str(phantom_store), "--encoder", "pixels", "--pixels-size", "4",
                              "-o", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    m = json.loads(line[-1])
    assert m["kind"] == "embeddings" and m["outputs"]["embeddings"] == str(out.resolve()) and m["dim"] == 16
    res = runner.invoke(app, ["embed", str(phantom_store), "--encoder", "resnet18", "-o", str(tmp_path / "y.zarr")])
    assert res.exit_code == 1 and "resnet18:PATH.pth" in res.output
    res = runner.invoke(app, ["pretrain", str(phantom_store), "-o", str(tmp_path / "enc"), "--weights", "1,2"])
    assert res.exit_code != 0


def test_real_shell_pipe_into_select(phantom_store, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    alseg = Path(sys.executable).parent / "alseg"
    cmd = (f"'{alseg}' embed '{phantom_store}' --encoder pixels --pixels-size 8 -o '{tmp_path / 'e.zarr'}' "
           f"--device cpu | '{alseg}' select --method coreset --budget 10% --device cpu")
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["kind"] == "selection" and len(m["selected"]) == 13   # floor(10% of 130 train slices)


def test_inference_trunk_folds_batch_norm_exactly():
    """embed's trunk (BN folded, channels-last) equals the plain eval trunk to float rounding,
    with non-trivial running statistics; the original network is left untouched."""
    from alseg_cli.device import like_weights
    from alseg_cli.encoders.models import inference_trunk, resnet_trunk

    torch.manual_seed(0)
    net = resnet_trunk("resnet18", 1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    x = torch.randn(5, 1, 64, 64)
    fast = inference_trunk(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert like_weights(fast, x).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = net.eval()(x)
        got = fast(like_weights(fast, x))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
