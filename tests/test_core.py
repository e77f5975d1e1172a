"""Atomic writes, manifests, registries and the dataset store layout."""
import json
from pathlib import Path

import numpy as np
import pytest

from alseg_cli.atomic import atomic_path, write_json
from alseg_cli.errors import AlsegError
from alseg_cli.manifest import content_hash, load_manifest, make_manifest
from alseg_cli.registry import Registry
from alseg_cli.store import DatasetStore


def test_atomic_path_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_refuses_overwrite_without_force(tmp_path):
    out = tmp_path / "m.json"
    write_json(out, {"a": 1}, force=False)
    with pytest.raises(AlsegError, match="--force"):
        write_json(out, {"a": 2}, force=False)
    write_json(out, {"a": 3}, force=True)
    assert json.loads(out.read_text()) == {"a": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_second_writer_of_the_same_output_fails_and_nothing_is_replaced(tmp_path):
    out = tmp_path / "s.json"
    with atomic_path(out) as tmp:
        tmp.write_text("first")
        with pytest.raises(AlsegError, match="being written by another alseg process"):
            with atomic_path(out, force=True):
                pass
    assert out.read_text() == "first"
    # a writer that passed its existence check before the first finished must not replace it
    import alseg_cli.atomic as atomic
    real = atomic.check_writable
    atomic.check_writable = lambda path, force: Path(path)
    try:
        with pytest.raises(AlsegError, match="already exists"):
            with atomic_path(out) as tmp:
                tmp.write_text("second")
    finally:
        atomic.check_writable = real
    assert out.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_concurrent_prep_to_one_output_one_wins_and_its_manifest_is_true(tmp_path):
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("alseg"))
    cmd = [exe, "prep", "phantoms", "-o", "p.zarr", "--size", "32", "--patients", "4"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate() for p in procs]
    ok = [o for p, o in zip(procs, outs) if p.returncode == 0]
    bad = [o for p, o in zip(procs, outs) if p.returncode != 0]
    assert len(ok) == 1 and len(bad) == 1, outs
    assert "already exists" in bad[0][1] or "being written" in bad[0][1]
    manifest = json.loads(ok[0][0].strip().splitlines()[-1])
    assert DatasetStore(tmp_path / "p.zarr").attrs["content_hash"] == manifest["content_hash"]
    assert not list(tmp_path.glob(".p.zarr*"))


def test_killed_writers_leave_nothing_that_survives_the_next_write(tmp_path):
    out = tmp_path / "d.zarr"
    (tmp_path / ".d.zarr.tmp-deadbeef").mkdir()             # a killed prep's temporary
    (tmp_path / ".d.zarr.lock").write_text("999999999")     # ... and its lock (no such pid)
    with atomic_path(out) as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr"]


def test_unwritable_destination_is_a_sentence(tmp_path, monkeypatch):
    import errno

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(AlsegError, match=r"cannot write .*out/m.json: the file system is read-only; choose"):
        write_json(tmp_path / "out" / "m.json", {})


def test_manifest_records_provenance(tmp_path, phantom_store):
    m = make_manifest("dataset", {"size": 64}, inputs={"dataset": phantom_store}, seed=3)
    for key in ("kind", "format_version", "alseg_version", "command", "args", "seed",
                "libraries", "created", "inputs", "outputs"):
        assert key in m
    assert m["inputs"]["dataset"]["sha256"] == content_hash(phantom_store)
    assert load_manifest(json.dumps(m), expect=["dataset"])["seed"] == 3
    with pytest.raises(AlsegError):
        load_manifest(json.dumps(m), expect=["selection"])


def test_registry_refuses_duplicates():
    reg = Registry("thing")
    reg.register("a", "first")(object())
    with pytest.raises(ValueError):
        reg.register("a", "again")(object())
    with pytest.raises(AlsegError, match="unknown thing"):
        reg.get("b")


def test_phantom_store_layout(phantom_store):
    ds = DatasetStore(phantom_store)
    n = len(ds)
    assert ds.images().shape == (n, 1, 64, 64) and ds.images().dtype == np.float32
    assert ds.masks().shape == (n, 64, 64) and ds.masks().dtype == np.uint8
    assert set(np.unique(ds.masks())) <= {0, 1, 2, 3}
    assert set(np.unique(ds.scribbles())) <= {0, 1, 2, 3, 4}
    assert len(set(ds.slice_ids)) == n
    # patients never straddle splits
    for p in set(ds.patients):
        assert len(set(ds.split[ds.patients == p])) == 1
    info = ds.volume_info[0]
    assert ds.native_mask(0).shape == tuple(info["shape"])
    assert ds.attrs["format"] == "alseg.dataset" and ds.attrs["version"] == 1
