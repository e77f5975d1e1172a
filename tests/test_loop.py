"""Loop orchestration with a fake backend: layout, first-round rule, resume after a kill."""
from __future__ import annotations

import json
import zlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from alseg_cli.atomic import write_json
from alseg_cli.errors import AlsegError
from alseg_cli.experiment import steps as layout
from alseg_cli.experiment.loop import run_loop

POOL = [f"s{i:03d}" for i in range(100)]


class FakeBackend:
    """Deterministic stand-ins for the steps; records every call that actually ran."""

    def __init__(self, fail_after_output=None):
        self.calls = []
        self.train_kw = {}      # model dir -> the train options it got
        self.fail_after_output = fail_after_output  # step name: crash after writing its output

    def _maybe_fail(self, step):
        if self.fail_after_output == step:
            self.fail_after_output = None
            raise RuntimeError(f"killed after {step} output")

    pretrain_threads = []   # class-level: instances made by name inside the loop record here too

    def pretrain(self, dataset, out, seed, epochs, device, **kw):
        import torch
        self.calls.append(("pretrain", str(out), kw))
        FakeBackend.pretrain_threads.append(torch.get_num_threads())
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text(json.dumps({"seed": seed}))
        return {"kind": "encoder"}

    def embed(self, dataset, out, encoder, device, **options):
        self.calls.append(("embed", str(out), options))
        Path(out).mkdir(parents=True, exist_ok=True)
        return {"kind": "embeddings", "encoder": encoder}

    def select(self, *, method, budget, dataset, embeddings, models, labeled, seed, out, device, **kw):
        self.calls.append(("select", str(out), method, embeddings, tuple(models)))
        lab = json.loads(Path(labeled).read_text())["labeled"] if labeled else {}
        pct = float(budget.rstrip("%"))
        n = math.floor(len(POOL) * pct / 100) - len(lab)
        pool = [s for s in POOL if s not in lab]
        picked = list(np.random.default_rng(seed).choice(pool, size=n, replace=False))
        rnd = max(lab.values(), default=-1) + 1
        manifest = {"kind": "selection", "method": method, "selected": picked,
                    "labeled": {**lab, **{s: rnd for s in picked}}}
        write_json(out, manifest, force=True)
        self._maybe_fail("select")
        return manifest

    def train(self, *, dataset, labels, out, supervision, iterations, ensemble, seed, device, **kw):
        self.calls.append(("train", str(out), iterations, ensemble, kw.get("model")))
        self.train_kw[str(out)] = kw
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "manifest.json").write_text(json.dumps({"best_member": 0, "labels": labels}))
        return {"kind": "model", "best_member": 0}

    def evaluate(self, *, dataset, model, out, split, device):
        self.calls.append(("evaluate", str(out)))
        labels = json.loads((Path(model) / "manifest.json").read_text())["labels"]
        n = len(json.loads(Path(labels).read_text())["labeled"])
        ev = {"kind": "evaluation", "per_volume": [
            {"volume": f"v{k}", "dice": {"1": n / 100 + 0.01 * k, "2": n / 100}} for k in range(4)]}
        write_json(out, ev, force=True)
        return ev


@pytest.fixture
def dataset(tmp_path):
    p = tmp_path / "data.zarr"
    p.mkdir()
    return str(p)


def options(dataset, **kw):
    base = dict(dataset=dataset, methods="random,coreset,bald", budgets="2,5,10", seeds="0,1",
                iterations=7, device="cpu")
    base.update(kw)
    return base


def selections(run_dir):
    return {str(p.relative_to(run_dir)): json.loads(p.read_text())["selected"]
            for p in sorted(Path(run_dir).glob("*/seed*/round*/selection.json"))}


def test_layout_first_round_and_manifest(tmp_path, dataset):
    be = FakeBackend()
    out = tmp_path / "run"
    m = run_loop(out, backend=be, **options(dataset, models_per_round=3))
    assert m["kind"] == "loop" and m["steps_run"] == 3 * 3 * 2 * 3 and m["steps_skipped"] == 0
    for method in ("random", "coreset", "bald"):
        for seed in (0, 1):
            for pct in ("2", "5", "10"):
                rd = out / method / f"seed{seed}" / f"round{pct}"
                assert (rd / "selection.json").exists() and (rd / "model").is_dir() and (rd / "eval.json").exists()
                for step in ("select", "train", "evaluate"):
                    assert layout.is_done(rd, step)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["budgets"] == [2.0, 5.0, 10.0] and cfg["seeds"] == [0, 1]
    sel = {c[1]: c for c in be.calls if c[0] == "select"}
    # bald needs a model: its first round is random, later rounds get the previous model
    first = sel[str(out / "bald/seed0/round2/selection.json")]
    assert first[2] == "random" and first[4] == ()
    later = sel[str(out / "bald/seed0/round5/selection.json")]
    assert later[2] == "bald" and later[4] == (str(out / "bald/seed0/round2/model"),)
    # coreset chooses its own first round, on the shared pixel embeddings
    cs = sel[str(out / "coreset/seed1/round2/selection.json")]
    assert cs[2] == "coreset" and cs[3].endswith("embeddings/pixels.zarr")
    # cumulative budgets: floor(100 * pct) labelled after each round
    lab = json.loads((out / "random/seed1/round10/selection.json").read_text())["labeled"]
    assert len(lab) == 10
    assert all(c[3] == 3 for c in be.calls if c[0] == "train")
    # mean Dice per round: n/100 for class 2, n/100 + 0.01 k for class 1, k = 0..3
    assert m["chains"][0]["dice"] == pytest.approx([0.0275, 0.0575, 0.1075])


def test_resume_after_kill_is_identical(tmp_path, dataset):
    ref = tmp_path / "ref"
    run_loop(ref, backend=FakeBackend(), **options(dataset))

    out = tmp_path / "run"
    count = {"n": 0}

    def kill_after(step, directory):
        count["n"] += 1
        if count["n"] > 11:
            raise KeyboardInterrupt("simulated kill")

    first = FakeBackend()
    with pytest.raises(KeyboardInterrupt):
        run_loop(out, backend=first, on_step=kill_after, **options(dataset))
    # a crash between an output's rename and its done marker: that step is redone
    second = FakeBackend(fail_after_output="select")
    with pytest.raises(RuntimeError):
        run_loop(out, backend=second, **options(dataset))
    third = FakeBackend()
    m = run_loop(out, backend=third, **options(dataset))
    assert selections(out) == selections(ref)
    done_before = {c[1] for c in first.calls if c[0] in ("select", "train", "evaluate")}
    redone = {c[1] for c in third.calls} & done_before
    assert not redone, f"finished steps were redone: {redone}"
    # chain steps done before: 10 in the first run (its first step was the shared pixel
    # embedding), 2 in the second (train, evaluate) before its select crashed unmarked
    assert m["steps_skipped"] == 12
    crashed = {c[1] for c in second.calls if c[0] == "select"}
    assert crashed and crashed <= {c[1] for c in third.calls}  # unmarked step redone
    # a fourth run has nothing left to do
    fourth = FakeBackend()
    m4 = run_loop(out, backend=fourth, **options(dataset))
    assert fourth.calls == [] and m4["steps_run"] == 0


def test_pretrain_once_per_seed_and_reused(tmp_path, dataset):
    be = FakeBackend()
    out = tmp_path / "run"
    run_loop(out, backend=be, pretrain=True, **options(dataset, methods="gcl-coreset"))
    pre = [c for c in be.calls if c[0] == "pretrain"]
    assert sorted(c[1] for c in pre) == [str(out / "encoders/seed0"), str(out / "encoders/seed1")]
    sels = [c for c in be.calls if c[0] == "select"]
    assert {c[3] for c in sels if "seed1" in c[1]} == {str(out / "embeddings/seed1.zarr")}
    with pytest.raises(AlsegError, match="need an encoder"):
        run_loop(tmp_path / "other", backend=FakeBackend(), **options(dataset, methods="gcl-coreset"))


def test_finished_chains_need_no_encoder_or_embeddings(tmp_path, dataset):
    """A run's records kept without its encoders and embedding stores (only configs,
    selections, evaluations and markers) resume without pretraining or embedding again;
    a seed added later gets its own encoder and embeddings, and only those."""
    import shutil

    out = tmp_path / "run"
    opts = options(dataset, methods="gcl-coreset,coreset", seeds="0")
    run_loop(out, backend=FakeBackend(), pretrain=True, **opts)
    shutil.rmtree(out / "encoders")
    shutil.rmtree(out / "embeddings")
    be = FakeBackend()
    m = run_loop(out, backend=be, pretrain=True, **opts)
    assert be.calls == [] and m["steps_run"] == 0
    be = FakeBackend()
    run_loop(out, backend=be, pretrain=True, **options(dataset, methods="gcl-coreset,coreset", seeds="0,1"))
    assert sorted((c[0], Path(c[1]).name) for c in be.calls if c[0] in ("pretrain", "embed")) == [
        ("embed", "pixels.zarr"), ("embed", "seed1.zarr"), ("pretrain", "seed1")]
    assert all("seed1" in c[1] for c in be.calls if c[0] in ("select", "train", "evaluate"))


def test_keep_records_copies_finished_chains_without_weights(tmp_path, dataset):
    """examples/keep_records.sh: finished chains of the seeds asked for, no model or encoder
    directories, no zarr stores; a loop resumed from the copy has nothing to redo; an
    unfinished chain is left out; a directory that is not a run is one line and exit 2."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "examples" / "keep_records.sh"
    out = tmp_path / "run"
    opts = options(dataset, methods="gcl-coreset,random", seeds="0,1")
    run_loop(out, backend=FakeBackend(), pretrain=True, **opts)
    (out / "random/seed1/round10/.done/evaluate.json").unlink()      # as if killed mid-round
    shutil.rmtree(out / "gcl-coreset/seed1/round10")                   # killed before its last round
    pseudo = sorted((out / "random/seed0").glob("round*"))[0] / "pseudo/pseudo.zarr"
    pseudo.mkdir(parents=True)                                         # as a +knn-prop round writes
    (pseudo / "zarr.json").write_text("{}")
    rec = tmp_path / "records"
    done = subprocess.run(["bash", str(script), str(out), str(rec), "0", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 finished chains" in done.stderr and "2 unfinished" in done.stderr
    assert sorted(p.parent.name + "/" + p.name for p in rec.glob("*/seed*")) == [
        "gcl-coreset/seed0", "random/seed0"]
    assert not list(rec.rglob("model")) and not (rec / "encoders").exists() and not (rec / "embeddings").exists()
    assert not list(rec.rglob("*.zarr"))
    assert selections(rec) == {k: v for k, v in selections(out).items() if k.split("/")[1] == "seed0"}
    be = FakeBackend()
    run_loop(rec, backend=be, pretrain=True, **options(dataset, methods="gcl-coreset,random", seeds="0"))
    assert be.calls == []
    bad = subprocess.run(["bash", str(script), str(tmp_path), str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_resume_refuses_changed_settings(tmp_path, dataset):
    out = tmp_path / "run"
    run_loop(out, backend=FakeBackend(), **options(dataset, methods="random", seeds="0"))
    with pytest.raises(AlsegError, match="budgets"):
        run_loop(out, backend=FakeBackend(), **options(dataset, methods="random", seeds="0", budgets="2,5"))
    # adding a seed is allowed: only the new chain runs
    be = FakeBackend()
    m = run_loop(out, backend=be, **options(dataset, methods="random", seeds="0,3"))
    assert m["steps_run"] == 9 and all("seed3" in c[1] for c in be.calls)


def test_a_run_follows_its_dataset_by_content_not_path(tmp_path):
    """Records copied to another checkout resume on a store with the same content at another
    path (also a run from before config.json kept the hash: the loop manifest's is used);
    a store with other content, at the old path or a new one, is one clear error."""
    def store(path, digest):
        path.mkdir(parents=True)
        (path / "zarr.json").write_text(json.dumps({"attributes": {"content_hash": digest * 64}}))
        return str(path)

    out = tmp_path / "run"
    opts = dict(methods="random", seeds="0")
    run_loop(out, backend=FakeBackend(), **options(store(tmp_path / "a.zarr", "1"), **opts))
    moved = store(tmp_path / "elsewhere" / "a.zarr", "1")
    be = FakeBackend()
    assert run_loop(out, backend=be, **options(moved, **opts))["steps_run"] == 0 and be.calls == []
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == moved and saved["dataset_sha256"] == "1" * 64
    with pytest.raises(AlsegError, match="other content"):
        run_loop(out, backend=FakeBackend(), **options(store(tmp_path / "b.zarr", "2"), **opts))
    del saved["dataset_sha256"]                       # as written before hashes were kept
    write_json(out / "config.json", saved, force=True)
    again = store(tmp_path / "third" / "a.zarr", "1")
    assert run_loop(out, backend=FakeBackend(), **options(again, **opts))["steps_run"] == 0
    saved = json.loads((out / "config.json").read_text())
    del saved["dataset_sha256"]
    write_json(out / "config.json", saved, force=True)
    (out / "manifest.json").unlink()                  # no hash anywhere: the path decides
    with pytest.raises(AlsegError, match="started with dataset="):
        run_loop(out, backend=FakeBackend(), **options(moved, **opts))


def test_missing_dataset(tmp_path):
    with pytest.raises(AlsegError, match="not found"):
        run_loop(tmp_path / "run", backend=FakeBackend(), dataset=str(tmp_path / "nope.zarr"))


@pytest.mark.slow  # spawning workers that import torch takes minutes on a busy 2-core box
def test_parallel_jobs_match_serial(tmp_path, dataset):
    # spawned workers import the backend by name; tests/ is on sys.path under pytest
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_loop(serial, backend=FakeBackend(), **options(dataset, methods="random,coreset", seeds="0"))
    m = run_loop(parallel, backend=f"{__name__}:FakeBackend", jobs=2, threads=1,
                 **options(dataset, methods="random,coreset", seeds="0"))
    assert selections(parallel) == selections(serial)
    assert [c["method"] for c in m["chains"]] == ["random", "coreset"] and m["steps_run"] == 18
    with pytest.raises(AlsegError, match="module:Class"):
        run_loop(tmp_path / "x", backend=FakeBackend(), jobs=2, **options(dataset))


def test_single_seed_pretraining_gets_the_idle_jobs_threads(tmp_path, dataset):
    """jobs=2 with one seed: its pretraining runs alone, so it takes both jobs' threads."""
    import torch

    before = torch.get_num_threads()
    FakeBackend.pretrain_threads.clear()
    try:
        # one seed and one method: both phases run in this process, nothing is spawned
        run_loop(tmp_path / "run", backend=f"{__name__}:FakeBackend", jobs=2, threads=1, pretrain=True,
                 **options(dataset, methods="gcl-coreset", seeds="0"))
        assert FakeBackend.pretrain_threads == [2]
        assert torch.get_num_threads() == 1   # the chains' share again
    finally:
        torch.set_num_threads(before)


def test_progress_in_a_log_prints_phases_and_rounds(tmp_path, dataset, capsys, monkeypatch):
    """stderr not a terminal (nohup, make, CI): a pretraining note, then one line per round."""
    from alseg_cli.experiment import progress

    polls = []

    class PollEveryStep(progress.LoopProgress):   # poll on each step instead of on a timer
        def __init__(self, *a, **kw):
            super().__init__(*a, poll_seconds=3600, **kw)
            polls.append(self)

    def poll_now(step, directory):
        if polls:
            polls[0].poll()

    monkeypatch.setattr(progress, "LoopProgress", PollEveryStep)
    run_loop(tmp_path / "run", backend=FakeBackend(), progress=True, on_step=poll_now, pretrain=True,
             **options(dataset, methods="gcl-coreset", seeds="0"))
    err = capsys.readouterr().err
    assert "loop: 1 chain (method x seed), 0/9 steps already done" in err
    assert "loop: pretraining a GCL encoder" in err and "for seed 0" in err
    lines = [ln for ln in err.splitlines() if "gcl-coreset seed 0 round" in ln]
    # rounds 1..n-1 are seen by the per-step polls, the last by the final poll at stop
    assert [ln.split("round ")[1].split("/")[0] for ln in lines] == ["1", "2", "3"]
    assert all("Dice" in ln and "steps" in ln for ln in lines)
    # a method added later: the note names only the encoder still to train
    polls.clear()
    run_loop(tmp_path / "run", backend=FakeBackend(), progress=True, pretrain=True,
             **options(dataset, methods="gcl-coreset,spcon-coreset", seeds="0"))
    err = capsys.readouterr().err
    assert "loop: pretraining spcon-coreset's encoder" in err and "GCL" not in err


def test_encoder_template_picks_one_encoder_per_seed(tmp_path, dataset):
    """--encoder DIR/seed{seed}: reuse another run's per-seed encoders without pretraining."""
    for s in (0, 1):
        (tmp_path / "enc" / f"seed{s}").mkdir(parents=True)
    be = FakeBackend()
    out = tmp_path / "run"
    run_loop(out, backend=be, encoder=str(tmp_path / "enc/seed{seed}"), **options(dataset, methods="gcl-coreset"))
    assert not [c for c in be.calls if c[0] == "pretrain"]
    assert sorted(c[1] for c in be.calls if c[0] == "embed") == [str(out / "embeddings/seed0.zarr"),
                                                                 str(out / "embeddings/seed1.zarr")]
    with pytest.raises(AlsegError, match=r"seed2.*no such encoder directory \(seed 2\)"):
        run_loop(tmp_path / "other", backend=FakeBackend(), encoder=str(tmp_path / "enc/seed{seed}"),
                 **options(dataset, methods="gcl-coreset", seeds="0,2"))


class CollapsingBackend(FakeBackend):
    """Every model of the round with 5 labelled slices is degenerate; training options seen."""

    seen = []

    def train(self, *, dataset, labels, out, supervision, iterations, ensemble, seed, device, **kw):
        CollapsingBackend.seen.append(kw)
        m = super().train(dataset=dataset, labels=labels, out=out, supervision=supervision,
                          iterations=iterations, ensemble=ensemble, seed=seed, device=device)
        (Path(out) / "manifest.json").write_text(json.dumps(
            {"best_member": 0, "labels": labels, "members": [{"best_val_dice": 0.6}]}))
        return m

    def evaluate(self, *, dataset, model, out, split, device):
        ev = super().evaluate(dataset=dataset, model=model, out=out, split=split, device=device)
        if "round5" in str(out):
            ev["degenerate"] = "predicts no foreground class on validation"
            write_json(out, ev, force=True)
        return ev


def test_collapsed_rounds_are_flagged_in_the_log_and_manifest(tmp_path, dataset, capsys):
    CollapsingBackend.seen = []
    m = run_loop(tmp_path / "run", backend=CollapsingBackend(), progress=True,
                 train_options={"retries": 1}, **options(dataset, methods="random", seeds="0"))
    assert m["chains"][0]["degenerate"] == [None, "predicts no foreground class on validation", None]
    assert "random seed 0: 3/3 rounds, last Dice 10.8, 1 collapsed round(s)" in capsys.readouterr().err
    # with retries, later rounds pass half the previous round's val Dice as the floor
    assert "min_val_dice" not in CollapsingBackend.seen[0]
    assert [kw["min_val_dice"] for kw in CollapsingBackend.seen[1:]] == pytest.approx([0.3, 0.3])
    marker = layout.read_marker(tmp_path / "run" / "random" / "seed0" / "round5", "evaluate")
    assert marker["degenerate"] == "predicts no foreground class on validation"


def test_ensemble_methods_get_an_ensemble_and_others_keep_one_model(tmp_path, dataset):
    be = FakeBackend()
    out = tmp_path / "run"
    run_loop(out, backend=be, **options(dataset, methods="random,variance-ratio", seeds="0"))
    trained = {Path(c[1]).parts[-4]: c[3] for c in be.calls if c[0] == "train"}
    assert trained == {"random": 1, "variance-ratio": 3}            # ensemble_models defaults to 3
    be = FakeBackend()
    run_loop(tmp_path / "run2", backend=be, **options(dataset, methods="variance-ratio", seeds="0",
                                                      models_per_round=5))
    assert {c[3] for c in be.calls if c[0] == "train"} == {5}


def test_pixel_baseline_size_is_a_setting(tmp_path, dataset):
    for kw, want in (({}, 32), ({"pixels_size": 16}, 16)):
        be = FakeBackend()
        run_loop(tmp_path / f"run{want}", backend=be, **options(dataset, methods="coreset", seeds="0", **kw))
        assert [c[2] for c in be.calls if c[0] == "embed"] == [{"pixels_size": want}]


def test_any_registered_network_and_the_pretrained_gcl_weights(tmp_path, dataset):
    weights = tmp_path / "r50.pth"
    weights.write_bytes(b"x")
    be = FakeBackend()
    run_loop(tmp_path / "run", backend=be, **options(dataset, methods="gcl-coreset", seeds="0", pretrain=True,
                                                    model="unet-resnet50",
                                                    train_options={"backbone_weights": str(weights)}))
    assert {c[4] for c in be.calls if c[0] == "train"} == {"unet-resnet50"}
    assert [c[2]["weights"] for c in be.calls if c[0] == "pretrain"] == [[0.0, 1.0, 0.0, 0.0]]
    be = FakeBackend()
    run_loop(tmp_path / "run2", backend=be, **options(dataset, methods="random", seeds="0"))
    assert {c[4] for c in be.calls if c[0] == "train"} == {None}        # the backend's unet / dmpls
    for kw, msg in (({"model": "unet-resnet50"}, "needs train_options.backbone_weights"),
                    ({"model": "dmpls"}, "--supervision scribble"), ({"model": "nonet"}, "unknown"),
                    ({"model": "unet-resnet50", "train_options": {"backbone_weights": "nope.pth"}}, "not found"),
                    ({"train_options": {"backbone_weights": str(weights)}}, "has no pretrained backbone")):
        with pytest.raises(AlsegError, match=msg):
            run_loop(tmp_path / "bad", backend=FakeBackend(), **options(dataset, **kw))
        assert not (tmp_path / "bad").exists()


def test_named_variants_train_their_own_encoders_and_label_their_chains(tmp_path, dataset):
    be = FakeBackend()
    out = tmp_path / "run"
    variants = {"ntxent": {"method": "coreset", "pretrain_options": {"groups": "none"}},
                "vol": {"method": "gcl-coreset", "pretrain_options": {"groups": "volume", "weights": [0, 0, 1, 0]}}}
    run_loop(out, backend=be, **options(dataset, methods="ntxent,vol,gcl-coreset,coreset", seeds="0", pretrain=True,
                                        variants=variants))
    pre = {c[1]: c[2] for c in be.calls if c[0] == "pretrain"}
    assert pre == {str(out / "encoders/seed0"): {}, str(out / "encoders/ntxent/seed0"): {"groups": "none"},
                   str(out / "encoders/vol/seed0"): {"groups": "volume", "weights": [0, 0, 1, 0]}}
    sel = {c[1]: c for c in be.calls if c[0] == "select"}
    first = lambda name: sel[str(out / f"{name}/seed0/round2/selection.json")]   # noqa: E731
    assert first("ntxent")[2] == "coreset" and first("ntxent")[3].endswith("embeddings/ntxent-seed0.zarr")
    assert first("vol")[2] == "gcl-coreset" and first("vol")[3].endswith("embeddings/vol-seed0.zarr")
    assert first("gcl-coreset")[3].endswith("embeddings/seed0.zarr")
    assert first("coreset")[3].endswith("embeddings/pixels.zarr")
    # resuming may add a variant, never change one that ran
    run_loop(out, backend=FakeBackend(), **options(dataset, methods="ntxent", seeds="0", pretrain=True,
                                                   variants={**variants, "pv": {"method": "coreset", "pretrain_options": {}}}))
    with pytest.raises(AlsegError, match="variant ntxent was run with other settings"):
        run_loop(out, backend=FakeBackend(), **options(dataset, methods="ntxent", seeds="0", pretrain=True,
                                                       variants={"ntxent": {"method": "random"}}))
    for bad, msg in (({"coreset": {"method": "random"}}, "a method's name"), ({"x": {"method": "nope"}}, "unknown"),
                     ({"x": {"method": "coreset", "embedding": "pixels"}}, "unknown key"),
                     ({"x": {"method": "coreset", "pretrain_options": {"epochz": 1}}}, "epochz")):
        with pytest.raises(AlsegError, match=msg):
            run_loop(tmp_path / "bad", backend=FakeBackend(), **options(dataset, methods="random", variants=bad))
    with pytest.raises(AlsegError, match="unknown"):
        run_loop(tmp_path / "bad", backend=FakeBackend(), **options(dataset, methods="nosuch"))


def test_the_ablation_config_runs_its_eleven_rows(tmp_path, dataset):
    from alseg_cli.metrics.report import bootstrap_report

    root = Path(__file__).resolve().parents[1]
    be = FakeBackend()
    out = tmp_path / "ablation"
    run_loop(out, backend=be, config=str(root / "examples" / "ablation.toml"), dataset=dataset, seeds="0",
             supervision="full")
    weights = {Path(c[1]).parent.name: c[2]["weights"] for c in be.calls if c[0] == "pretrain"}
    assert len(weights) == 10 and weights["ntxent-patient-volume"] == [1, 0.05, 0.35, 0]
    assert weights["patient"] == [0, 1, 0, 0] and weights["patient-volume-slice"] == [0, 0.33, 0.33, 0.33]
    table = bootstrap_report(out, n_boot=20, plot_png=False)["table"]
    assert len(table["methods"]) == 11 and table["budgets"] == [2.0, 3.0, 4.0, 5.0]
    assert {r["method"] for r in table["means"]} == set(table["methods"])


def test_volume_unit_reaches_every_selection(tmp_path, dataset):
    seen = []

    class Recording(FakeBackend):
        def select(self, **kw):
            seen.append(kw.get("unit"))
            kw.pop("unit", None)
            return super().select(**kw)
    run_loop(tmp_path / "run", backend=Recording(), **options(dataset, methods="random", seeds="0", unit="volume"))
    assert seen == ["volume"] * 3
    with pytest.raises(AlsegError, match="--unit 'slab'"):
        run_loop(tmp_path / "bad", backend=FakeBackend(), **options(dataset, unit="slab"))
    with pytest.raises(AlsegError, match="whole volumes with full masks; pass --unit volume"):
        run_loop(tmp_path / "bad", backend=FakeBackend(), **options(dataset, model="unet3d"))


def test_warm_start_starts_each_round_from_the_previous_rounds_model(tmp_path, dataset):
    be = FakeBackend()
    out = tmp_path / "run"
    run_loop(out, backend=be, warm_start=True, **options(dataset, methods="random", seeds="0"))
    inits = {Path(k).parts[-2]: v.get("init") for k, v in be.train_kw.items()}
    chain = out / "random" / "seed0"
    assert inits == {"round2": None, "round5": str(chain / "round2" / "model"),
                     "round10": str(chain / "round5" / "model")}
    assert json.loads((out / "config.json").read_text())["warm_start"] is True
    be = FakeBackend()
    run_loop(tmp_path / "scratch", backend=be, **options(dataset, methods="random", seeds="0"))
    assert all("init" not in kw for kw in be.train_kw.values())
    with pytest.raises(AlsegError, match="warm_start"):       # results differ: a resume must agree
        run_loop(out, backend=FakeBackend(), warm_start=False, **options(dataset, methods="random", seeds="0"))


class ModelBackend(FakeBackend):
    """Writes model manifests of kind "model" (what twins link), with the labels file trained on
    and where it trained (device, threads) as train_seg records them."""

    def train(self, *, dataset, labels, out, supervision, iterations, ensemble, seed, device, **kw):
        import torch
        super().train(dataset=dataset, labels=labels, out=out, supervision=supervision,
                      iterations=iterations, ensemble=ensemble, seed=seed, device=device, **kw)
        (Path(out) / "member0").mkdir()
        (Path(out) / "member0" / "best.pt").write_text(f"weights of {out}")
        write_json(Path(out) / "manifest.json", {
            "kind": "model", "best_member": 0, "labels": labels, "outputs": {"model_dir": str(Path(out).resolve())},
            "args": {"device": "cpu", "threads": torch.get_num_threads()}})
        return {"kind": "model", "best_member": 0}

    def select(self, *, method, seed, **kw):
        """FakeBackend's picks, drawn apart per method (a real BALD picks other slices than random)."""
        return super().select(method=method, seed=seed + (zlib.crc32(method.encode()) % 1000) * 7919, **kw)

    def propagate(self, *, dataset, labeled, model, out, **options):
        self.calls.append(("propagate", str(out)))
        write_json(Path(out) / "pseudo.json", {"kind": "pseudo", "count": 0})
        return {"count": 0}


def test_first_rounds_on_the_same_slices_share_one_model(tmp_path, dataset):
    """BALD's random first round and a +knn-prop chain's first round train what random's and
    the base method's first rounds trained: the model is linked, not trained again; later
    rounds, other seeds, ensembles (stochastic-batches) and +arco rounds train their own."""
    be = ModelBackend()
    out = tmp_path / "run"
    methods = "random,bald,stochastic-batches,random+knn-prop,random+arco"
    run_loop(out, backend=be, jobs=1, **options(dataset, methods=methods, seeds="0,1", budgets="2,5"))
    trained = {c[1] for c in be.calls if c[0] == "train"}
    for seed in (0, 1):
        for name in ("bald", "random+knn-prop"):
            model = out / name / f"seed{seed}" / "round2" / "model"
            source = out / "random" / f"seed{seed}" / "round2" / "model"
            assert str(model) not in trained
            manifest = json.loads((model / "manifest.json").read_text())
            assert manifest["reused_from"] == str(source.resolve())
            assert manifest["outputs"]["model_dir"] == str(model.resolve())
            assert (model / "member0" / "best.pt").samefile(source / "member0" / "best.pt")
            marker = json.loads((model.parent / ".done" / "train.json").read_text())
            assert marker["reused_from"] == str(source.resolve())
            assert (model.parent / "eval.json").exists()
            assert str(out / name / f"seed{seed}" / "round5" / "model") in trained
        for name in ("random", "stochastic-batches", "random+arco"):
            assert str(out / name / f"seed{seed}" / "round2" / "model") in trained
    assert "reused_from" not in json.loads((out / "random/seed0/round2/model/manifest.json").read_text())


def _linked_from(model: Path):
    return json.loads((Path(model) / "manifest.json").read_text()).get("reused_from")


def test_rounds_of_another_run_with_the_same_training_call_are_linked(tmp_path, dataset, capsys):
    """--reuse-models: an ablation row that repeats an experiment's chain (same selections,
    seeds, schedule and recipe) links every round's model from it; a chain whose rounds
    differ, a run with another recipe, and other CPU threads train their own."""
    first = tmp_path / "experiment"
    run_loop(first, backend=ModelBackend(), jobs=1, warm_start=True,
             **options(dataset, methods="random,coreset", seeds="0"))
    be = ModelBackend()
    second = tmp_path / "ablation"
    # warm starts: round 5 starts from round 2's model, linked here from the experiment's
    run_loop(second, backend=be, jobs=1, reuse_models=str(first), warm_start=True, progress=True,
             **options(dataset, methods="coreset,random+knn-prop", seeds="0", budgets="2,5"))
    log = capsys.readouterr().err
    summary = {m.group(1): line for line in log.splitlines() if (m := re.search(r"loop: (.+?): \d+/\d+ rounds", line))}
    assert summary["coreset seed 0"].endswith(", 2 linked") and summary["random+knn-prop seed 0"].endswith(", 1 linked")
    assert "round 2/2 Dice" in log and "(model linked)" in log
    trained = {c[1] for c in be.calls if c[0] == "train"}
    for budget in (2, 5):
        model = second / "coreset" / "seed0" / f"round{budget}" / "model"
        assert str(model) not in trained
        assert _linked_from(model) == str((first / "coreset" / "seed0" / f"round{budget}" / "model").resolve())
        assert (model / "member0" / "best.pt").samefile(first / "coreset/seed0" / f"round{budget}/model/member0/best.pt")
    # the first round has no propagation yet: random's; the second trains on pseudo-labels too
    assert _linked_from(second / "random+knn-prop/seed0/round2/model") is not None
    assert str(second / "random+knn-prop" / "seed0" / "round5" / "model") in trained
    assert json.loads((second / "config.json").read_text())["reuse_models"] == [str(first.resolve())]

    for other, kw in (("batch", {"batch_size": 3}), ("iters", {"iterations": 8})):
        be = ModelBackend()
        run_loop(tmp_path / other, backend=be, jobs=1, reuse_models=str(first), warm_start=True,
                 **options(dataset, methods="coreset", seeds="0", budgets="2", **kw))
        assert [c[1] for c in be.calls if c[0] == "train"] == [str(tmp_path / other / "coreset/seed0/round2/model")]
    be = ModelBackend()        # from scratch: round 2 (no warm start yet) is the same, round 5 is not
    run_loop(tmp_path / "cold", backend=be, jobs=1, reuse_models=str(first),
             **options(dataset, methods="coreset", seeds="0", budgets="2,5"))
    assert [c[1] for c in be.calls if c[0] == "train"] == [str(tmp_path / "cold" / "coreset/seed0/round5/model")]
    campaign = tmp_path / "campaign"           # the same rounds, but labels from an annotator
    shutil.copytree(first, campaign)
    write_json(campaign / "config.json", {**json.loads((first / "config.json").read_text()), "human": True}, force=True)
    be = ModelBackend()
    run_loop(tmp_path / "not-from-a-campaign", backend=be, jobs=1, reuse_models=str(campaign), warm_start=True,
             **options(dataset, methods="coreset", seeds="0", budgets="2"))
    assert len([c for c in be.calls if c[0] == "train"]) == 1
    used = json.loads((first / "coreset/seed0/round2/model/manifest.json").read_text())["args"]["threads"]
    be = ModelBackend()
    run_loop(tmp_path / "threads", backend=be, jobs=1, reuse_models=str(first), threads=used + 1, warm_start=True,
             **options(dataset, methods="coreset", seeds="0", budgets="2"))
    assert len([c for c in be.calls if c[0] == "train"]) == 1
    with pytest.raises(AlsegError, match="--reuse-models .*absent: no such directory"):
        run_loop(tmp_path / "bad", backend=ModelBackend(), reuse_models=str(tmp_path / "absent"),
                 **options(dataset, methods="coreset", seeds="0"))

