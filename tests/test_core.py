"""Atomic writes, manifests, registries and the dataset store layout."""
import json

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
