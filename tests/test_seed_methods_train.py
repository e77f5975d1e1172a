"""The related papers' methods in training and in the loop, on tiny phantoms: train-seg
--pseudo (k-NN propagation's weak labels), --semi arco, and all three from `loop`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alseg_cli.acquisition.propagate import propagate
from alseg_cli.acquisition.select import select
from alseg_cli.errors import AlsegError
from alseg_cli.segmentation.losses import full_loss
from alseg_cli.segmentation.recipe import BatchSampler
from alseg_cli.segmentation.train import mixed_sampler, pseudo_batch_loss, train_seg
from alseg_cli.store import DatasetStore, write_pseudo

torch.set_num_threads(1)
TINY = dict(iterations=4, base_channels=4, device="cpu", progress=False, val_every=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from alseg_cli.prep import write_phantom_store

    path = tmp_path_factory.mktemp("tiny") / "data.zarr"
    write_phantom_store(path, patients=6, size=32, slices=6, seed=1)
    return path


def weights(model_dir: Path):
    return torch.load(next(model_dir.glob("member0/best.pt")), weights_only=False)["state_dict"]


def test_pseudo_batch_loss_is_eq1_per_row():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(4, 3, 8, 8, generator=g, requires_grad=True), torch.randint(0, 3, (4, 8, 8), generator=g)
    is_p = torch.tensor([False, True, False, True])
    loss = pseudo_batch_loss(lambda r: full_loss(logits[r], y[r]), logits, y, is_p, 0.3, 0)
    ref = 0.5 * full_loss(logits[~is_p], y[~is_p]) + 0.3 * 0.5 * full_loss(logits[is_p], y[is_p])
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    zero = pseudo_batch_loss(lambda r: full_loss(logits[r], y[r]), logits, y, is_p, 0.0, 0)
    (grad,) = torch.autograd.grad(zero, logits)
    assert float(grad[is_p].abs().sum()) == 0.0 and float(grad[~is_p].abs().sum()) > 0


def test_pseudo_share_keeps_the_labelled_rows_share_of_every_batch():
    targets = torch.ones(40, 4, 4, dtype=torch.long)           # 4 labelled rows, then 36 pseudo
    is_p = torch.arange(40) >= 4
    uniform = mixed_sampler("uniform", targets, [1], (is_p, 0.1, None))
    plain = BatchSampler("uniform", targets, [1])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert all(torch.equal(uniform(6, g1), plain(6, g2)) for _ in range(20))    # Belharbi's batches unchanged
    shared = mixed_sampler("uniform", targets, [1], (is_p, 0.1, 0.5))
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([shared(6, g) for _ in range(500)])
    assert (picks[:, :3] < 4).all() and (picks[:, 3:] >= 4).all()            # 3 labelled + 3 pseudo
    assert set(picks[:, 3:].flatten().tolist()) == set(range(4, 40))         # every pseudo row drawn
    most = mixed_sampler("uniform", targets, [1], (is_p, 0.1, 0.99))
    assert int((most(6, g) < 4).sum()) == 1                                   # at least one labelled row
    again = mixed_sampler("uniform", targets, [1], (is_p, 0.1, 0.5))
    assert torch.equal(again(6, torch.Generator().manual_seed(0)), picks[0])


def test_propagation_then_pseudo_training(tiny, tmp_path):
    store = DatasetStore(tiny)
    sel = select(method="random", budget="10%", dataset=tiny, seed=0, out=tmp_path / "sel.json", device="cpu")
    plain = train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "plain", seed=3, **TINY)
    m = propagate(tiny, str(tmp_path / "sel.json"), tmp_path / "plain", tmp_path / "prop", k=4, device="cpu")
    assert m["count"] > 0 and m["labelled"] == len(sel["labeled"])
    assert m["pseudo_dice"] is not None and 0 <= m["pseudo_dice"] <= 1
    assert not set(m["pseudo_labeled"]) & set(sel["labeled"])
    # weight 0 trains on the labels alone: exactly the plain run's weights
    train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "zero", seed=3, pseudo=tmp_path / "prop",
                     pseudo_weight=0.0, **TINY)
    assert all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "plain").values(),
                                                  weights(tmp_path / "zero").values()))
    used = train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "used", seed=3, pseudo=tmp_path / "prop",
                     pseudo_weight=0.5, **TINY)
    assert used["args"]["pseudo_count"] == m["count"] and plain["args"].get("pseudo_count") is None
    half = train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "half", seed=3, pseudo=tmp_path / "prop",
                     pseudo_weight=0.5, pseudo_share=0.5, **TINY)
    assert half["args"]["pseudo_share"] == 0.5
    assert not all(torch.equal(weights(tmp_path / "half")[k], weights(tmp_path / "used")[k])
                   for k in weights(tmp_path / "used"))
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(AlsegError, match="a fraction of each batch"):
            train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "bad", pseudo=tmp_path / "prop",
                      pseudo_share=bad, **TINY)
    assert not all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "plain").values(),
                                                      weights(tmp_path / "used").values()))
    # protection: the next pick avoids the pseudo-labelled slices while the pool allows
    nxt = select(method="random", budget="20%", dataset=tiny, seed=1, labeled=tmp_path / "sel.json",
                 protect=str(tmp_path / "prop" / "pseudo.json"), device="cpu")
    assert nxt["protection"]["held_out"] and not set(nxt["selected"]) & set(m["pseudo_labeled"])
    assert len(nxt["labeled"]) == nxt["budget"]["resolved"]          # budgets count oracle slices only
    # a pseudo-label on a labelled slice is refused
    bad = tmp_path / "bad.zarr"
    ids = sel["selected"][:1]
    write_pseudo(bad, np.zeros((1, store.size, store.size), np.uint8), ids, {})
    with pytest.raises(AlsegError, match="labelled"):
        train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "bad", pseudo=bad, **TINY)


def test_arco_trains_resumes_identically_and_refuses_scribbles(tiny, tmp_path):
    select(method="random", budget="10%", dataset=tiny, seed=0, out=tmp_path / "sel.json", device="cpu")
    opts = dict(semi="arco", semi_options={"unlabelled_batch": 2, "anchors": 32, "negatives": 16}, seed=5, **TINY)
    full = train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "full", **opts)
    assert full["args"]["semi"]["sampler"] == "sg" and full["members"][0]["iterations"] == 4
    train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "plain", seed=5, **TINY)
    assert not all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "full").values(),
                                                      weights(tmp_path / "plain").values()))
    # killed after its first validation (iteration 2), then resumed: teacher, heads and banks
    # come back from last.pt, so the weights equal the uninterrupted run's
    import alseg_cli.segmentation.train as tr
    real = tr.validation_scores
    calls = {"n": 0}

    def dies(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    tr.validation_scores = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "cut", **opts)
    finally:
        tr.validation_scores = real
    train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "cut", resume=True, **opts)
    last = lambda d: torch.load(d / "member0" / "last.pt", weights_only=False)["state_dict"]   # noqa: E731
    assert all(torch.allclose(a, b) for a, b in zip(last(tmp_path / "full").values(), last(tmp_path / "cut").values()))
    with pytest.raises(AlsegError, match="full masks"):
        train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "s", model="dmpls", supervision="scribble",
                  semi="arco", **TINY)
    with pytest.raises(AlsegError, match="unknown option"):
        train_seg(tiny, str(tmp_path / "sel.json"), tmp_path / "s", semi="arco", semi_options={"anchor": 3}, **TINY)


def test_loop_runs_all_three_related_methods(tiny, tmp_path):
    from alseg_cli.experiment.loop import run_loop

    run = tmp_path / "run"
    m = run_loop(run, dataset=str(tiny), methods="spcon-coreset,random+knn-prop,random+arco", budgets="10,20",
                 seeds="0", iterations=3, base_channels=4, device="cpu", pretrain_epochs=1, progress=False,
                 propagation_options={"k": 3, "weight": 0.2}, semi_options={"unlabelled_batch": 2, "anchors": 16})
    assert m["steps_run"] >= 18
    enc = json.loads((run / "encoders" / "spcon-coreset" / "seed0" / "config.json").read_text())
    assert enc["loss"] == "sp-supcon"
    prop = json.loads((run / "random+knn-prop" / "seed0" / "round20" / "pseudo" / "pseudo.json").read_text())
    model = json.loads((run / "random+knn-prop" / "seed0" / "round20" / "model" / "manifest.json").read_text())
    assert model["args"]["pseudo_count"] == prop["count"] > 0 and model["args"]["pseudo_weight"] == 0.2
    arco = json.loads((run / "random+arco" / "seed0" / "round10" / "model" / "manifest.json").read_text())
    assert arco["args"]["semi"]["anchors"] == 16
    for chain in ("spcon-coreset", "random+knn-prop", "random+arco"):
        sel = json.loads((run / chain / "seed0" / "round20" / "selection.json").read_text())
        assert len(sel["labeled"]) == sel["budget"]["resolved"]
    with pytest.raises(AlsegError, match="unknown modifier"):
        run_loop(tmp_path / "bad", dataset=str(tiny), methods="random+magic", budgets="10", seeds="0",
                 iterations=3, device="cpu", progress=False)


def test_cli_pipeline_sp_supcon_propagate_pseudo(tiny, tmp_path):
    import subprocess
    import sys

    def alseg(*args, ok=True):
        r = subprocess.run([sys.executable, "-m", "alseg_cli", *map(str, args)], capture_output=True, text=True)
        assert (r.returncode == 0) == ok, r.stderr
        return r

    enc = tmp_path / "enc"
    alseg("pretrain", tiny, "-o", enc, "--loss", "sp-supcon", "--epochs", "1", "--size", "16",
          "--scans-per-batch", "3", "--meta", "position,patient", "--lambdas", "position=1,patient=0.1",
          "--device", "cpu")
    cfg = json.loads((enc / "config.json").read_text())
    assert cfg["meta"] == ["position", "patient"] and cfg["lambdas"] == {"position": 1.0, "patient": 0.1}
    emb = alseg("embed", tiny, "--encoder", enc, "-o", tmp_path / "e.zarr", "--device", "cpu").stdout
    sel = subprocess.run([sys.executable, "-m", "alseg_cli", "select", "--method", "spcon-coreset", "--budget", "10%",
                          "-o", tmp_path / "sel.json", "--device", "cpu"], input=emb, capture_output=True, text=True)
    assert sel.returncode == 0, sel.stderr
    alseg("train-seg", tiny, "-l", tmp_path / "sel.json", "-o", tmp_path / "m0", "--iterations", "2",
          "--base-channels", "4", "--device", "cpu")
    prop = alseg("propagate", tiny, "-l", tmp_path / "sel.json", "--model", tmp_path / "m0", "-o", tmp_path / "p",
                 "-k", "3", "--metric", "embedding", "-e", tmp_path / "e.zarr", "--device", "cpu")
    assert json.loads(prop.stdout)["count"] > 0 and "pseudo-labelled" in prop.stderr
    alseg("train-seg", tiny, "-l", tmp_path / "sel.json", "-o", tmp_path / "m1", "--iterations", "2",
          "--base-channels", "4", "--device", "cpu", "--pseudo", tmp_path / "p", "--pseudo-weight", "0.3")
    bad = alseg("pretrain", tiny, "-o", tmp_path / "bad", "--loss", "sp-supcon", "--meta", "organ", ok=False)
    assert bad.stderr.strip().count("\n") == 0 and "unknown meta-label" in bad.stderr
    assert not (tmp_path / "bad").exists()
    bad = alseg("propagate", tiny, "-l", tmp_path / "sel.json", "--model", tmp_path / "m0", "-o", tmp_path / "q",
                "--metric", "embedding", ok=False)
    assert "needs an embeddings store" in bad.stderr and bad.stderr.strip().count("\n") == 0
