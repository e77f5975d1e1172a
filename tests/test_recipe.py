"""Training recipe parts and the degenerate-model detection with retries."""
import json

import numpy as np
import pytest
import torch

from alseg_cli.errors import AlsegError
from alseg_cli.segmentation import train as train_mod
from alseg_cli.segmentation.recipe import BatchSampler, ce_weights, degenerate, lr_at
from alseg_cli.segmentation.train import RETRY_STRIDE, train_seg
from alseg_cli.store import DatasetStore

FAST = dict(iterations=6, val_every=3, base_channels=4, progress=False)


def test_lr_schedule_warmup_then_poly():
    assert lr_at(0, 100, 0.1, 0) == pytest.approx(0.1)
    assert [lr_at(i, 100, 0.1, 4) for i in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lr_at(50, 100, 0.1, 4) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert lr_at(99, 100, 0.1, 0) == pytest.approx(0.1 * 0.01 ** 0.9)


def test_foreground_sampler_fills_half_of_each_batch_with_foreground_slices():
    targets = torch.zeros(10, 4, 4, dtype=torch.uint8)
    targets[7, 1, 1] = 2                                   # one slice of ten shows foreground
    s = BatchSampler("foreground", targets, [1, 2, 3])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        pick = s(6, g)
        assert (pick[:3] == 7).all() and pick.shape == (6,)
    uniform = BatchSampler("uniform", targets, [1, 2, 3])
    draws = torch.cat([uniform(6, g) for _ in range(50)])
    assert (draws == 7).float().mean() < 0.3             # uniform stays uniform
    # a batch of only background or only foreground slices: the sampler is uniform
    assert BatchSampler("foreground", torch.zeros(5, 2, 2), [1])(4, g).max() < 5


def test_balanced_class_weights_inverse_sqrt_frequency():
    t = torch.tensor([[0] * 90 + [1] * 9 + [2] * 1])
    w = ce_weights("balanced", t, 4)
    raw = torch.tensor([90, 9, 1]).double().rsqrt()
    raw = torch.cat([raw, raw.max()[None]])              # class 3 absent: the largest weight
    torch.testing.assert_close(w, (raw / raw.mean()).float())
    assert ce_weights("none", t, 4) is None
    # scribbles: the unannotated value is not a class
    w2 = ce_weights("balanced", torch.tensor([[0, 1, 4, 4]]), 3, ignore=4)
    assert w2.shape == (3,) and torch.isfinite(w2).all()


def test_degenerate_names_dead_classes():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 0, 0], masks[1, 1, 1] = 1, 2
    assert degenerate(masks.copy(), masks, 4) is None             # class 3 absent from val: fine
    assert degenerate(np.zeros_like(masks), masks, 4) == "predicts no foreground class on validation"
    pred = masks.copy()
    pred[1, 1, 1] = 1
    assert degenerate(pred, masks, 4) == "never predicts class 2 on validation"


def test_bad_recipe_values_are_one_line_errors(phantom_store, tmp_path):
    for kw, msg in ((dict(optimizer="lbfgs"), "--optimizer"), (dict(sampler="x"), "--sampler"),
                    (dict(warmup=-1), "--warmup"), (dict(retries=1.5), "--retries"),
                    (dict(class_weights="inverse"), "--class-weights"), (dict(augment="heavy"), "--augment")):
        with pytest.raises(AlsegError, match=msg):
            train_seg(phantom_store, "all", tmp_path / "m", **kw, **FAST)
        assert not (tmp_path / "m").exists() and not (tmp_path / ".m.partial").exists()


@pytest.fixture(scope="module")
def collapse_store(tmp_path_factory):
    """Phantoms whose first train patient's masks are all background: training on its slices
    alone is a case built to collapse (nothing but background to learn)."""
    import dataclasses

    from alseg_cli.data.phantoms import make_phantoms, phantom_attrs
    from alseg_cli.store import write_dataset

    vols = [dataclasses.replace(v, mask=np.zeros_like(v.mask)) if v.patient == "phantom000" else v
            for v in make_phantoms(8, 32, 6, seed=0)]
    split = {f"phantom{p:03d}": "train" if p < 5 else "val" if p < 7 else "test" for p in range(8)}
    path = tmp_path_factory.mktemp("collapse") / "data.zarr"
    write_dataset(path, iter(vols), 32, split, {**phantom_attrs(), "preprocessing": {"size": 32}})
    return path


def _background_only(store_path, tmp_path):
    store = DatasetStore(store_path)
    bg = np.flatnonzero(store.patients == "phantom000")
    sel = tmp_path / "bg.json"
    sel.write_text(json.dumps({"kind": "selection", "labeled": {str(store.slice_ids[i]): 0 for i in bg}}))
    return sel


def test_collapsed_model_is_detected_retried_and_flagged(collapse_store, tmp_path):
    sel = _background_only(collapse_store, tmp_path)
    m = train_seg(collapse_store, sel, tmp_path / "m", retries=1, seed=5, iterations=30, val_every=10,
                  base_channels=4, lr=0.05, progress=False)
    member = m["members"][0]
    assert member["degenerate"] == "predicts no foreground class on validation"
    assert [a["seed"] for a in member["attempts"]] == [5, 5 + RETRY_STRIDE]
    assert all(a["degenerate"] for a in member["attempts"])
    assert m["degenerate"] == member["degenerate"]                    # the model is flagged
    assert (tmp_path / "m" / "member0.retry1" / "best.pt").exists()
    from alseg_cli.api import evaluate
    e = evaluate(collapse_store, tmp_path / "m", split="val", progress=False, hd95=False)
    assert e["degenerate"] == member["degenerate"]


def test_retry_keeps_the_first_healthy_attempt(phantom_store, tmp_path, monkeypatch):
    real = train_mod.validation_scores
    seeds = []

    def first_seed_collapses(net, *a, **k):
        dice, why = real(net, *a, **k)
        return (0.0, "predicts no foreground class on validation") if seeds[-1] == 7 else (dice, None)

    real_member = train_mod._train_member

    def record_seed(mdir, config, recipe, images, targets, val, fill, seed, *rest):
        seeds.append(seed)
        return real_member(mdir, config, recipe, images, targets, val, fill, seed, *rest)

    monkeypatch.setattr(train_mod, "validation_scores", first_seed_collapses)
    monkeypatch.setattr(train_mod, "_train_member", record_seed)
    m = train_seg(phantom_store, "all", tmp_path / "m", retries=2, seed=7, **FAST)
    member = m["members"][0]
    assert seeds == [7, 7 + RETRY_STRIDE]                            # stopped at the healthy one
    assert member["seed"] == 7 + RETRY_STRIDE and member["degenerate"] is None
    assert member["dir"] == "member0.retry1" and m["degenerate"] is None
    assert [a["degenerate"] is not None for a in member["attempts"]] == [True, False]
    from alseg_cli.segmentation.predict import load_model
    load_model(tmp_path / "m")                                        # the kept attempt loads


def test_no_retries_by_default_and_floor(phantom_store, tmp_path, monkeypatch):
    real = train_mod.validation_scores
    monkeypatch.setattr(train_mod, "validation_scores", lambda *a, **k: (real(*a, **k)[0], None))
    m = train_seg(phantom_store, "all", tmp_path / "m", seed=1, min_val_dice=1.01, retries=1, **FAST)
    member = m["members"][0]
    assert "under the floor" in member["degenerate"] and len(member["attempts"]) == 2
    m2 = train_seg(phantom_store, "all", tmp_path / "m2", seed=1, **FAST)
    assert "attempts" not in m2["members"][0]


def test_cli_recipe_options_reach_the_manifest_and_bad_ones_are_one_line(phantom_store, tmp_path):
    from typer.testing import CliRunner

    from alseg_cli.cli.main import app

    runner = CliRunner()
    base = ["train-seg", str(phantom_store), "--labels", "all", "--iterations", "4", "--val-every", "2",
            "--base-channels", "4", "--device", "cpu"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "m"), "--optimizer", "adamw", "--warmup", "2",
                                   "--sampler", "foreground", "--class-weights", "balanced", "--augment", "none"])
    assert r.exit_code == 0, r.output
    args = json.loads((tmp_path / "m" / "manifest.json").read_text())["args"]
    assert (args["optimizer"], args["warmup"], args["sampler"], args["class_weights"], args["augment"]) == \
        ("adamw", 2, "foreground", "balanced", "none")
    r = runner.invoke(app, base + ["-o", str(tmp_path / "bad"), "--sampler", "stratified"])
    assert r.exit_code != 0 and "--sampler 'stratified': choose uniform, foreground" in r.output
    assert not (tmp_path / "bad").exists()
