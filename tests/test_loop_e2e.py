"""One real loop on tiny phantoms: prep'd store -> select -> train-seg -> evaluate, killed
part-way and resumed; selections and (on CPU) metrics equal an uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alseg_cli.experiment.loop import run_loop
from alseg_cli.metrics.report import bootstrap_report

pytest.importorskip("alseg_cli.segmentation.train")
pytest.importorskip("alseg_cli.acquisition.select")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    from alseg_cli.prep import write_phantom_store

    path = tmp_path_factory.mktemp("tiny") / "data.zarr"
    write_phantom_store(path, patients=6, size=32, slices=6, seed=1)
    return path


def opts(store):
    # entropy needs the previous round's model: round 1 is random, round 2 uses the model
    return dict(dataset=str(store), methods="random,entropy", budgets="10,20", seeds="0",
                iterations=3, base_channels=4, device="cpu")


def results(run: Path):
    sel = {str(p.relative_to(run)): json.loads(p.read_text())["selected"]
           for p in sorted(run.glob("*/seed*/round*/selection.json"))}
    dice = {str(p.relative_to(run)): json.loads(p.read_text())["mean_dice"]
            for p in sorted(run.glob("*/seed*/round*/eval.json"))}
    return sel, dice


@pytest.mark.slow  # ~15 s of CPU (minutes of wall time on a busy 2-core box): run with -m slow
def test_real_loop_resumes_identically(tmp_path, tiny_store):
    torch.set_num_threads(1)
    ref = tmp_path / "ref"
    m_ref = run_loop(ref, **opts(tiny_store))
    assert m_ref["steps_run"] == 12

    run = tmp_path / "run"
    seen = []

    def kill(step, directory):
        seen.append(step)
        if len(seen) == 8:  # dies before entropy's first train
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_loop(run, on_step=kill, **opts(tiny_store))
    m = run_loop(run, **opts(tiny_store))
    assert m["steps_skipped"] == 7 and m["steps_run"] == 5
    assert results(run) == results(ref)
    first = json.loads((run / "entropy/seed0/round10/selection.json").read_text())
    assert first["method"] == "random"
    second = json.loads((run / "entropy/seed0/round20/selection.json").read_text())
    assert second["method"] == "entropy" and len(second["labeled"]) == len(first["labeled"]) + len(second["selected"])

    report = bootstrap_report(run, n_boot=100, plot_png=False)
    assert {r["method"] for r in report["table"]["rows"]} == {"random", "entropy"}


def test_a_loop_killed_mid_training_continues_the_member(tmp_path, tiny_store, monkeypatch):
    """Killed right after a member's first validation, the rerun continues it from last.pt:
    the same models and metrics as a run never killed. The train marker records the threads."""
    from alseg_cli.segmentation.checkpoint import MemberState

    torch.set_num_threads(1)
    settings = {**opts(tiny_store), "methods": "random", "iterations": 4, "train_options": {"val_every": 2}}
    ref = tmp_path / "ref"
    run_loop(ref, **settings)
    marker = json.loads((ref / "random/seed0/round10/.done/train.json").read_text())
    assert marker["threads"] == json.loads((ref / "config.json").read_text())["threads"]   # kept in records
    real = MemberState.validated
    calls = []

    def save_then_die(self, *a, **k):
        real(self, *a, **k)               # last.pt written
        calls.append(self.it)
        if len(calls) == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(MemberState, "validated", save_then_die)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_loop(run, **settings)
    assert calls == [2] and (run / "random/seed0/round10/.model.partial/member0/last.pt").exists()
    run_loop(run, **settings)
    assert calls[1] == 4                  # continued at iteration 3, not restarted
    assert results(run) == results(ref)


def test_linked_rounds_equal_trained_ones(tmp_path, tiny_store):
    """--reuse-models on real training: a run repeating another's chain links every round's
    model (nothing trained), and its Dice equals a run that trains them itself."""
    torch.set_num_threads(1)
    kw = dict(dataset=str(tiny_store), methods="random", budgets="10,20", seeds="0", iterations=3,
              base_channels=4, device="cpu", threads=1, warm_start=True)   # as the quick preset
    first, linked, trained = tmp_path / "first", tmp_path / "linked", tmp_path / "trained"
    run_loop(first, **kw)
    run_loop(linked, reuse_models=str(first), **kw)
    run_loop(trained, **kw)
    for r in ("round10", "round20"):
        model = linked / "random" / "seed0" / r / "model"
        manifest = json.loads((model / "manifest.json").read_text())
        assert manifest["reused_from"] == str((first / "random" / "seed0" / r / "model").resolve())
        assert "reused_from" not in json.loads((trained / "random/seed0" / r / "model/manifest.json").read_text())
    assert results(linked) == results(trained) == results(first)
