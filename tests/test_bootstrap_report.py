"""bootstrap report over a run directory: table values, best marks, files, bad inputs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alseg_cli import bootstrap_error
from alseg_cli.atomic import write_json
from alseg_cli.errors import AlsegError
from alseg_cli.metrics.report import bootstrap_report, mean_dice, unit_scores


def fake_run(root: Path, scores):
    """scores[method][budget][seed] = per-volume Dice list (class 1 and 2 equal)."""
    for method, by_budget in scores.items():
        for budget, by_seed in by_budget.items():
            for seed, vols in by_seed.items():
                ev = {"kind": "evaluation", "per_volume": [
                    {"volume": f"v{k}", "dice": {"1": d, "2": d}} for k, d in enumerate(vols)]}
                write_json(root / method / f"seed{seed}" / f"round{budget}" / "eval.json", ev)
    write_json(root / "config.json", {"supervision": "full"})


def test_report_matches_bootstrap_error(tmp_path):
    rng = np.random.default_rng(0)
    data = {m: {b: {s: list(rng.uniform(0.2, 0.9, 5)) for s in (0, 1, 2)} for b in (2, 5)}
            for m in ("random", "coreset")}
    data["coreset"][5] = {s: [0.99] * 5 for s in (0, 1, 2)}  # clearly best at 5 %
    run = tmp_path / "run"
    fake_run(run, data)
    m = bootstrap_report(run, n_boot=300, seed=2)
    assert m["kind"] == "bootstrap" and m["evaluations"] == 12
    rows = {(r["method"], r["budget"]): r for r in m["table"]["rows"]}
    mat = np.array([data["random"][2][s] for s in (0, 1, 2)])
    mean, err = bootstrap_error(mat, n_boot=300, seed=2)
    assert rows[("random", 2.0)]["mean"] == pytest.approx(mean)
    assert rows[("random", 2.0)]["error"] == pytest.approx(err)
    assert rows[("coreset", 5.0)]["best"] and not rows[("random", 5.0)]["best"]
    assert rows[("coreset", 5.0)]["error"] == pytest.approx(0.0, abs=1e-12)
    out = run / "bootstrap"
    md = (out / "table.md").read_text()
    assert "**99.0 ± 0.0**" in md and "| method | 2% | 5% |" in md
    with open(out / "table.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert (out / "dice.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "table.json").read_text())["budgets"] == [2.0, 5.0]
    with pytest.raises(AlsegError, match="already exists"):
        bootstrap_report(run)
    bootstrap_report(run, force=True, plot_png=False)


def test_unit_scores_and_errors(tmp_path):
    ev = {"per_volume": {"b": {"dice": {"1": 0.5, "2": 1.0}}, "a": {"dice": [0.0, 1.0]}}}
    names, s = unit_scores(ev)
    assert names == ["a", "b"] and np.allclose(s, [0.5, 0.75])
    assert mean_dice(ev) == pytest.approx(0.625)
    assert mean_dice({"mean_dice": 0.3}) == 0.3
    with pytest.raises(AlsegError, match="per-slice"):
        unit_scores(ev, "slice")
    run = tmp_path / "run"
    fake_run(run, {"random": {2: {0: [0.5, 0.6], 1: [0.5, 0.6, 0.7]}}})
    with pytest.raises(AlsegError, match="test units differ"):
        bootstrap_report(run)
    with pytest.raises(AlsegError, match="no <method>"):
        bootstrap_report(tmp_path)
    stray = tmp_path / "x.json"
    stray.write_text("{}")
    with pytest.raises(AlsegError, match="method/budget/seed"):
        bootstrap_report([stray], out=tmp_path / "o")


def test_cli_one_json_line_on_stdout(tmp_path):
    from typer.testing import CliRunner

    from alseg_cli.cli.main import app

    run = tmp_path / "run"
    fake_run(run, {"random": {2: {0: [0.5, 0.6], 1: [0.4, 0.7]}}})
    res = CliRunner().invoke(app, ["bootstrap", str(run), "--n-boot", "50", "--no-plot"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["kind"] == "bootstrap"
    res = CliRunner().invoke(app, ["bootstrap", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "not found" in res.output


def test_stage_timings_from_done_markers(tmp_path):
    """Per method and budget, the mean over seeds of each stage's recorded seconds; a linked
    model's train step is counted apart, not averaged in."""
    run = tmp_path / "run"
    fake_run(run, {"random": {2: {0: [0.5], 1: [0.6], 2: [0.6]}, 5: {0: [0.7]}}})
    secs = {(0, 2): (1.0, 100.0, 4.0), (1, 2): (3.0, 300.0, 6.0), (0, 5): (2.0, 50.0, None)}
    for (seed, budget), stages in secs.items():
        rd = run / "random" / f"seed{seed}" / f"round{budget}"
        for stage, sec in zip(("select", "train", "evaluate"), stages):
            if sec is not None:
                write_json(rd / ".done" / f"{stage}.json", {"step": stage, "seconds": sec})
    linked = run / "random" / "seed2" / "round2" / ".done"
    write_json(linked / "select.json", {"step": "select", "seconds": 2.0})
    write_json(linked / "train.json", {"step": "train", "seconds": 0.01, "reused_from": "runs/a/random/seed2/round2/model"})
    write_json(run / "encoders" / ".done" / "seed0.json", {"step": "seed0", "seconds": 200.0})
    write_json(run / "embeddings" / ".done" / "seed0.zarr.json", {"step": "seed0.zarr", "seconds": 7.0})
    write_json(run / "encoders" / "ntxent" / ".done" / "seed0.json", {"step": "seed0", "seconds": 90.0})
    write_json(run / "encoders" / "spcon-coreset" / ".done" / "seed0.json",
               {"step": "seed0", "seconds": 0.5, "reused_from": "runs/other/encoders/spcon-coreset/seed0"})
    m = bootstrap_report(run, plot_png=False)
    times = json.loads((run / "bootstrap" / "timings.json").read_text())
    assert times["once"] == {"pretrain seed0": 200.0, "pretrain ntxent-seed0": 90.0,
                             "pretrain spcon-coreset-seed0 (linked from runs/other/encoders/spcon-coreset/seed0)": 0.5,
                             "embed seed0": 7.0}
    assert times["rounds"] == [
        {"method": "random", "budget": 2.0, "linked": 1, "runs": 3, "select": 2.0, "train": 200.0, "evaluate": 5.0},
        {"method": "random", "budget": 5.0, "linked": 0, "runs": 1, "select": 2.0, "train": 50.0, "evaluate": None}]
    md = (run / "bootstrap" / "timings.md").read_text()
    assert "| random | 2 % | 2.0 s | 3.3 min (1 linked) | 5.0 s | 3 |" in md and "| pretrain seed0 | 3.3 min |" in md
    assert m["outputs"]["timings"] == str(run / "bootstrap" / "timings.md")


def _hd_run(root: Path, hd):
    """hd[method][seed] = per-volume [class1, class2] pooled HD95 (None = class absent)."""
    for method, by_seed in hd.items():
        for seed, vols in by_seed.items():
            ev = {"kind": "evaluation", "classes": ["a", "b"], "per_volume": [
                {"volume": f"v{k}", "dice": [0.5, 0.5], "hd95": h, "hd95_max": [None if x is None else 2 * x
                                                                                   for x in h]}
                for k, h in enumerate(vols)]}
            write_json(root / method / f"seed{seed}" / "round2" / "eval.json", ev)


def test_hd95_metric_is_lower_is_better_and_skips_undefined_classes(tmp_path):
    run = tmp_path / "run"
    hd = {"good": {0: [[1.0, 3.0], [2.0, None]], 1: [[1.0, 1.0], [4.0, 2.0]]},
          "bad": {0: [[9.0, 9.0], [8.0, 8.0]], 1: [[7.0, 9.0], [9.0, 9.0]]},
          "holes": {0: [[5.0, 5.0], [None, None]], 1: [[6.0, None], [4.0, 2.0]]}}
    _hd_run(run, hd)
    m = bootstrap_report(run, metric="hd95", n_boot=200, seed=1, plot_png=False)
    rows = {r["method"]: r for r in m["table"]["rows"]}
    assert rows["good"]["best"] and not rows["bad"]["best"]
    # literal: unit score = mean of defined classes; statistic = mean of defined (seed, unit) scores
    units = np.array([[np.mean([1.0, 3.0]), 2.0], [1.0, 3.0]])
    assert rows["good"]["mean"] == pytest.approx(units.mean())
    idx = np.random.default_rng(1).integers(0, 2, size=(200, 2))
    lit = np.array([units[:, i].mean() for i in idx])
    assert rows["good"]["error"] == pytest.approx(2 * lit.std(ddof=1))
    # a volume with no defined class in one seed: the resample mean is over the defined values
    vals = {0: [5.0, None], 1: [6.0, 3.0]}                    # per seed, per volume
    lit = [np.mean([vals[s][i] for i in draw for s in (0, 1) if vals[s][i] is not None]) for draw in idx]
    assert rows["holes"]["mean"] == pytest.approx(np.mean([5.0, 6.0, 3.0]))
    assert rows["holes"]["error"] == pytest.approx(2 * np.std(lit, ddof=1))
    mx = bootstrap_report(run, metric="hd95_max", n_boot=200, seed=1, plot_png=False, out=tmp_path / "mx")
    assert {r["method"]: r for r in mx["table"]["rows"]}["good"]["mean"] == pytest.approx(2 * units.mean())
    assert (run / "bootstrap" / "table.csv").read_text().startswith("method,budget_percent,mean_hd95,")
    with pytest.raises(AlsegError, match="--metric"):
        bootstrap_report(run, metric="hd99", out=tmp_path / "x")


def test_a_missing_seed_is_marked_and_warned(tmp_path):
    from typer.testing import CliRunner

    from alseg_cli.cli.main import app

    run = tmp_path / "run"
    fake_run(run, {"random": {2: {0: [0.5, 0.6], 1: [0.4, 0.7]}, 5: {0: [0.6, 0.6]}}})
    m = bootstrap_report(run, n_boot=50, plot_png=False)
    rows = {r["budget"]: r for r in m["table"]["rows"]}
    assert rows[5.0]["missing_seeds"] == [1] and rows[2.0]["missing_seeds"] == []
    assert "random at 5%: no evaluation for seed(s) 1" in m["table"]["warnings"][0]
    md = (run / "bootstrap" / "table.md").read_text()
    assert "60.0 ± 0.0†" in md and "† fewer seeds" in md
    res = CliRunner().invoke(app, ["bootstrap", str(run), "--n-boot", "50", "--no-plot", "--force"])
    assert res.exit_code == 0 and "warning" in res.stderr and "seed(s) 1" in res.stderr


def test_collapsed_models_are_flagged_in_every_table_format(tmp_path):
    run = tmp_path / "run"
    fake_run(run, {"random": {5: {0: [0.8, 0.7], 1: [0.0, 0.0]}, 10: {0: [0.9, 0.8], 1: [0.85, 0.8]}}})
    ev_path = run / "random" / "seed1" / "round5" / "eval.json"
    ev = json.loads(ev_path.read_text())
    ev["degenerate"] = "predicts no foreground class on validation"
    write_json(ev_path, ev, force=True)
    m = bootstrap_report(run, n_boot=50, seed=0)
    rows = {r["budget"]: r for r in m["table"]["rows"]}
    assert rows[5.0]["degenerate_seeds"] == [1] and rows[10.0]["degenerate_seeds"] == []
    assert rows[5.0]["text"].endswith("‡") and "‡" not in rows[10.0]["text"]
    assert rows[5.0]["mean"] == pytest.approx(np.mean([0.75, 0.0]))       # kept, never silently dropped
    md = (run / "bootstrap" / "table.md").read_text()
    assert "‡ includes a collapsed model" in md and "random 5% seed 1" in md
    with open(run / "bootstrap" / "table.csv") as fh:
        by_budget = {r["budget_percent"]: r for r in csv.DictReader(fh)}
    assert by_budget["5"]["degenerate_seeds"] == "1" and by_budget["10"]["degenerate_seeds"] == ""
    assert any("degenerate on validation" in w for w in m["table"]["warnings"])


def test_mean_over_budgets_column_is_each_seeds_average_bootstrapped(tmp_path):
    rng = np.random.default_rng(3)
    data = {m: {b: {s: list(rng.uniform(0.2, 0.9, 4)) for s in (0, 1, 2)} for b in (2, 3, 5)}
            for m in ("random", "gcl-coreset")}
    del data["random"][5][2]                                  # seed 2 lacks one budget
    fake_run(tmp_path / "run", data)
    m = bootstrap_report(tmp_path / "run", n_boot=200, seed=1, plot_png=False)
    means = {r["method"]: r for r in m["table"]["means"]}
    mat = np.mean([np.array([data["gcl-coreset"][b][s] for s in (0, 1, 2)]) for b in (2, 3, 5)], axis=0)
    mean, err = bootstrap_error(mat, n_boot=200, seed=1)
    assert means["gcl-coreset"]["mean"] == pytest.approx(mean) and means["gcl-coreset"]["error"] == pytest.approx(err)
    assert means["random"]["seeds"] == [0, 1] and means["random"]["missing_seeds"] == [2]
    literal = np.mean([np.mean([np.mean(data["random"][b][s]) for b in (2, 3, 5)]) for s in (0, 1)])
    assert means["random"]["mean"] == pytest.approx(literal)
    md = (tmp_path / "run" / "bootstrap" / "table.md").read_text()
    assert "| method | 2% | 3% | 5% | mean |" in md and means["random"]["text"] in md
    assert means["random"]["text"].endswith("†")


def test_run_dirs_sharing_a_method_are_labelled_not_refused(tmp_path):
    rng = np.random.default_rng(4)
    for name in ("ablation-a", "ablation-b"):
        fake_run(tmp_path / name, {"coreset": {2: {0: list(rng.uniform(0.3, 0.8, 3))}},
                                   name[-1]: {2: {0: list(rng.uniform(0.3, 0.8, 3))}}})
    m = bootstrap_report([tmp_path / "ablation-a", tmp_path / "ablation-b"], tmp_path / "out", n_boot=50,
                         plot_png=False)
    assert sorted(m["table"]["methods"]) == ["a", "b", "coreset [ablation-a]", "coreset [ablation-b]"]
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "bootstrap", str(tmp_path / "ablation-a"),
                        str(tmp_path / "ablation-b"), "-o", str(tmp_path / "out2"), "--no-plot", "--n-boot", "20",
                        "--compare", "coreset [ablation-a]"], capture_output=True, encoding="utf-8",
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "coreset [ablation-b]" in r.stderr      # printed as text, not swallowed as Rich markup


def test_annotation_cost_axis_across_full_weak_and_volume_runs(tmp_path):
    rng = np.random.default_rng(5)
    for name, sup, n_lab in (("full", "full", 10), ("weak", "scribble", 10), ("vol", "full", 8)):
        fake_run(tmp_path / name, {"m": {5: {0: list(rng.uniform(0.3, 0.8, 3))}}})
        write_json(tmp_path / name / "config.json", {"supervision": sup})
        write_json(tmp_path / name / "m" / "seed0" / "round5" / "selection.json",
                   {"kind": "selection", "budget": {"pool": 200}, "labeled": {f"s{k}": 0 for k in range(n_lab)}})
    m = bootstrap_report([tmp_path / n for n in ("full", "weak", "vol")], tmp_path / "out", n_boot=20,
                         scribble_cost=0.1)
    cost = {r["method"]: r["cost"] for r in m["table"]["rows"]}
    assert cost == pytest.approx({"m (full) [full]": 5.0, "m (full) [vol]": 4.0, "m (scribble)": 0.5})
    assert (tmp_path / "out" / "dice-cost.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(AlsegError, match="--scribble-cost"):
        bootstrap_report(tmp_path / "full", tmp_path / "o2", scribble_cost=0)
