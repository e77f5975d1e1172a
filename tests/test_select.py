"""`select`: every registered method on a small phantom store, budgets, manifests, bad inputs."""
import json
import sys
import types

import numpy as np
import pytest
import torch
import zarr

from alseg_cli.acquisition.methods import METHODS, method_spec
from alseg_cli.acquisition.select import select
from alseg_cli.errors import AlsegError
from alseg_cli.store import DatasetStore, write_embeddings

FAST = {"gcn_epochs": 10, "vaal_epochs": 1, "max_clusters": 50}
MODEL_METHODS = [n for n in METHODS.names() if method_spec(n).needs in ("model", "ensemble")]


@pytest.fixture(autouse=True)
def one_thread():
    # the test machine's cores are shared: oversubscribed threads make these tests 10x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def emb_store(phantom_store, tmp_path_factory):
    ds = DatasetStore(phantom_store)
    vec = ds.images().reshape(len(ds), -1)[:, ::16]          # raw-pixel embeddings, 256-d
    path = tmp_path_factory.mktemp("emb") / "emb.zarr"
    write_embeddings(path, vec, ds.slice_ids.tolist(),
                     {"dataset": str(phantom_store), "encoder": {"kind": "pixels", "gcl": False}})
    return path


@pytest.fixture
def fake_predict(monkeypatch):
    """A stand-in prediction API (deterministic probabilities from the images) so the
    selection logic of model-based methods is tested without training; the real API is
    exercised by test_model_methods_end_to_end."""
    def iter_predictions(model_dirs, store, indices, mode="softmax", samples=40, seed=0, device="auto",
                         batch_size=16):
        s = {"softmax": 1, "mc": samples, "ensemble": 3}[mode]
        idx = np.asarray(indices)
        for b in range(0, idx.size, batch_size):
            bi = idx[b:b + batch_size]
            img = torch.from_numpy(store.images(bi))[:, :1]           # (b, 1, H, W)
            logits = torch.stack([torch.cat([img * (j + 1) * 3, 1 - img, img ** 2], 1) for j in range(s)])
            yield bi, torch.softmax(logits, dim=2)
    mod = types.ModuleType("alseg_cli.segmentation.predict")
    mod.iter_predictions = iter_predictions
    monkeypatch.setitem(sys.modules, "alseg_cli.segmentation.predict", mod)


def _round0(phantom_store, tmp_path):
    out = tmp_path / "r0.json"
    select(method="random", budget="5%", dataset=phantom_store, seed=1, out=out)
    return out


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_exact_budget_train_only_deterministic(method, phantom_store, emb_store, tmp_path,
                                                            fake_predict):
    ds = DatasetStore(phantom_store)
    r0 = _round0(phantom_store, tmp_path)
    prev = json.loads(r0.read_text())["labeled"]
    models = [str(tmp_path)] if method in MODEL_METHODS else []
    kw = dict(method=method, budget="15%", embeddings=emb_store, labeled=r0, seed=3, models=models,
              mc_samples=3, batch_slices=4, options=FAST)
    if method in ("gcl-coreset", "spcon-coreset"):     # pixel embeddings: refused by provenance
        with pytest.raises(AlsegError, match="GCL" if method == "gcl-coreset" else "SP-Con"):
            select(**kw)
        return
    m = select(**kw, out=tmp_path / "r1.json")
    n_train = int((ds.split == "train").sum())
    assert m["budget"] == {"requested": "15%", "resolved": n_train * 15 // 100,
                           "added": n_train * 15 // 100 - len(prev), "pool": n_train}
    assert len(m["selected"]) == m["budget"]["added"] == len(set(m["selected"]))
    assert not set(m["selected"]) & set(prev)
    assert all(ds.split[ds.index_of[s]] == "train" for s in m["selected"])
    assert m["labeled"] == {**prev, **{s: 1 for s in m["selected"]}}
    assert m["kind"] == "selection" and m["method"] == method and m["dataset"] == str(phantom_store.resolve())
    assert json.loads((tmp_path / "r1.json").read_text())["selected"] == m["selected"]
    assert select(**kw)["selected"] == m["selected"]


def test_gcl_coreset_accepts_gcl_embeddings_and_equals_coreset(phantom_store, emb_store, tmp_path):
    ds = DatasetStore(phantom_store)
    gcl = tmp_path / "gcl.zarr"
    write_embeddings(gcl, zarr.open_group(str(emb_store))["vectors"][:], ds.slice_ids.tolist(),
                     {"dataset": str(phantom_store), "encoder": {"kind": "gcl", "gcl": True}})
    a = select(method="gcl-coreset", budget="10%", embeddings=gcl, seed=2)
    b = select(method="coreset", budget="10%", embeddings=gcl, seed=2)
    assert a["selected"] == b["selected"]
    sp = tmp_path / "sp.zarr"
    write_embeddings(sp, zarr.open_group(str(emb_store))["vectors"][:], ds.slice_ids.tolist(),
                     {"dataset": str(phantom_store), "encoder": {"kind": "alseg", "loss": "sp-supcon", "gcl": False}})
    assert select(method="spcon-coreset", budget="10%", embeddings=sp, seed=2)["selected"] == a["selected"]
    with pytest.raises(AlsegError, match="GCL"):
        select(method="gcl-coreset", budget="10%", embeddings=sp, seed=2)


def test_coreset_picks_are_the_kernel_picks(phantom_store, emb_store):
    from alseg_cli import kcenter_greedy

    ds = DatasetStore(phantom_store)
    m = select(method="coreset", budget="10", embeddings=emb_store, seed=5)
    train = ds.indices("train")
    vec = zarr.open_group(str(emb_store))["vectors"][:]
    expect = [str(ds.slice_ids[train[i]]) for i in kcenter_greedy(vec[train], 10, seed=5, device="cpu")]
    assert m["selected"] == expect and m["budget"]["resolved"] == 10
    # the manifest's covering radius: the farthest train slice from its nearest selected one
    from alseg_cli.acquisition.kcenter import covering_radius
    ids = ds.slice_ids[train].tolist()
    delta = covering_radius(vec[train], [ids.index(s) for s in m["selected"]])
    assert m["diagnostics"]["covering_radius"] == pytest.approx(delta, rel=1e-4)
    later = select(method="coreset", budget="20", embeddings=emb_store, labeled=m, seed=5)
    assert later["diagnostics"]["covering_radius"] < m["diagnostics"]["covering_radius"]
    assert "diagnostics" not in select(method="random", budget="10", dataset=phantom_store)


def test_random_different_seeds_differ_and_add_increments(phantom_store, tmp_path):
    a = select(method="random", add=6, dataset=phantom_store, seed=0)
    b = select(method="random", add=6, dataset=phantom_store, seed=1)
    assert a["selected"] != b["selected"] and a["budget"]["requested"] == "+6"
    c = select(method="random", add=4, dataset=phantom_store, labeled=a, seed=0)
    assert len(c["labeled"]) == 10 and set(c["labeled"].values()) == {0, 1}


def test_model_methods_need_labels_and_models(phantom_store, tmp_path, fake_predict):
    for method in MODEL_METHODS:
        with pytest.raises(AlsegError, match="random or coreset"):
            select(method=method, budget="5%", dataset=phantom_store, models=[str(tmp_path)])
    r0 = _round0(phantom_store, tmp_path)
    with pytest.raises(AlsegError, match="--model|ensemble"):
        select(method="bald", budget="10%", labeled=r0)
    with pytest.raises(AlsegError, match="no such model"):
        select(method="entropy", budget="10%", labeled=r0, models=[str(tmp_path / "nope")])


def test_bad_inputs_write_nothing(phantom_store, emb_store, tmp_path):
    ds = DatasetStore(phantom_store)
    out = tmp_path / "sel.json"
    with pytest.raises(AlsegError, match="unknown acquisition method"):
        select(method="magic", budget="5%", dataset=phantom_store, out=out)
    with pytest.raises(AlsegError, match="needs embeddings"):
        select(method="coreset", budget="5%", dataset=phantom_store, out=out)
    # NaN vectors (write_embeddings refuses them, so corrupt a valid store afterwards)
    bad = tmp_path / "nan.zarr"
    write_embeddings(bad, np.ones((len(ds), 4), np.float32), ds.slice_ids.tolist(), {"dataset": str(phantom_store)})
    arr = zarr.open_group(str(bad), mode="r+")["vectors"]
    v = arr[:]
    v[3, 1] = np.nan
    arr[:] = v
    (bad / "chunks.json").unlink()    # the chunk listing would (rightly) call the rewritten store damaged
    with pytest.raises(AlsegError, match="NaN"):
        select(method="coreset", budget="5%", embeddings=bad, out=out)
    # ids absent from the dataset
    alien = tmp_path / "alien.zarr"
    ids = ds.slice_ids.tolist()
    ids[0] = "nobody:000"
    write_embeddings(alien, np.ones((len(ds), 4), np.float32), ids, {"dataset": str(phantom_store)})
    with pytest.raises(AlsegError, match="not in the dataset"):
        select(method="coreset", budget="5%", embeddings=alien, out=out)
    # labelled ids absent from the dataset
    with pytest.raises(AlsegError, match="not in"):
        select(method="random", budget="5%", dataset=phantom_store,
               labeled={"kind": "selection", "labeled": {"ghost:001": 0}}, out=out)
    # labelled slice outside the train split
    val_id = str(ds.slice_ids[ds.indices("val")[0]])
    with pytest.raises(AlsegError, match="not in the 'train' split"):
        select(method="random", budget="5%", dataset=phantom_store,
               labeled={"kind": "selection", "labeled": {val_id: 0}}, out=out)
    assert not out.exists()
    out.write_text("{}")
    with pytest.raises(AlsegError, match="--force"):
        select(method="random", budget="5%", dataset=phantom_store, out=out)
    select(method="random", budget="5%", dataset=phantom_store, out=out, force=True)
    assert json.loads(out.read_text())["kind"] == "selection"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alien.zarr", "nan.zarr", "sel.json"]


def test_model_methods_end_to_end(phantom_store, tmp_path):
    try:
        from alseg_cli.segmentation.train import train_seg
    except ImportError:
        pytest.skip("alseg_cli.segmentation.train.train_seg is not built yet")
    r0 = _round0(phantom_store, tmp_path)
    model = tmp_path / "model"
    train_seg(phantom_store, str(r0), model, base_channels=4, iterations=3, min_iterations=1, batch_size=2,
              val_every=3, ensemble=2, seed=0, device="cpu", progress=False)
    for method in MODEL_METHODS:
        m = select(method=method, budget="10%", labeled=r0, models=[str(model)], mc_samples=2,
                   batch_slices=3, device="cpu", seed=0)
        assert len(m["selected"]) == m["budget"]["added"] > 0, method
        assert not set(m["selected"]) & set(json.loads(r0.read_text())["labeled"])


def test_ensemble_methods_refuse_a_single_model(phantom_store, tmp_path):
    from alseg_cli.segmentation.train import train_seg

    r0 = _round0(phantom_store, tmp_path)
    train_seg(phantom_store, str(r0), tmp_path / "one", base_channels=4, iterations=1, batch_size=2,
              val_every=1, seed=0, device="cpu", progress=False)
    for method in ("variance-ratio", "ensemble-entropy", "stochastic-batches"):
        with pytest.raises(AlsegError, match="needs an ensemble of at least 2 models and got 1.*--ensemble M"):
            select(method=method, budget="10%", labeled=r0, models=[str(tmp_path / "one")], device="cpu")
    # two one-member models are an ensemble of two
    train_seg(phantom_store, str(r0), tmp_path / "two", base_channels=4, iterations=1, batch_size=2,
              val_every=1, seed=1, device="cpu", progress=False)
    m = select(method="variance-ratio", budget="10%", labeled=r0, models=[str(tmp_path / "one"),
                                                                          str(tmp_path / "two")], device="cpu")
    assert len(m["selected"]) == m["budget"]["added"]


@pytest.mark.parametrize("method", ["random", "coreset"])
def test_volume_unit_takes_whole_volumes_within_the_budget(method, phantom_store, emb_store):
    ds = DatasetStore(phantom_store)
    kw = {"embeddings": emb_store} if method == "coreset" else {"dataset": phantom_store}
    a = select(method=method, budget="20%", unit="volume", seed=3, **kw)
    b = select(method=method, budget="40%", unit="volume", labeled=a, seed=3, **kw)
    pool = ds.indices("train").size
    for m, pct in ((a, 20), (b, 40)):
        ids = list(m["labeled"])
        vols = {s.split(":")[0] for s in ids}
        assert sum(ds.volume_slices(v).size for v in vols) == len(ids)        # whole volumes only
        assert len(ids) <= pool * pct // 100 and m["annotation"]["whole_volumes"] == len(vols)
        assert m["unit"] == "volume" and m["budget"]["added"] == len(m["selected"])
        assert m["annotation"]["cost"] == pytest.approx({"full": len(ids), "scribble": len(ids) / 15})
    assert set(a["labeled"]) < set(b["labeled"])
    assert select(method=method, budget="20%", unit="volume", seed=3, **kw)["selected"] == a["selected"]
    if method == "coreset":      # k-center over mean-pooled volume vectors, brute force
        vec = zarr.open_group(str(emb_store))["vectors"][:].astype(np.float64)
        train_vols = sorted(set(ds.volumes[ds.indices("train")].tolist()))
        means = {v: vec[ds.volumes == v].mean(0) for v in train_vols}
        first_pick = a["selected"][0].split(":")[0]
        second = [s.split(":")[0] for s in a["selected"] if s.split(":")[0] != first_pick]
        if second:
            far = max((v for v in train_vols if v != first_pick),
                      key=lambda v: np.linalg.norm(means[v] - means[first_pick]))
            assert second[0] == far
    with pytest.raises(AlsegError, match="--unit volume works with"):
        select(method="typiclust", budget="20%", unit="volume", embeddings=emb_store)
    with pytest.raises(AlsegError, match="--unit 'slab'"):
        select(method="random", budget="20%", unit="slab", dataset=phantom_store)
