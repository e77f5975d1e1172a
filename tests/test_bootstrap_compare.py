"""bootstrap --compare: paired differences against a literal loop, known answers, files, CLI."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from alseg_cli.errors import AlsegError
from alseg_cli.metrics.compare import paired_difference
from alseg_cli.metrics.report import bootstrap_report

from test_bootstrap_report import fake_run


def literal_paired(a, b, n_boot, seed):
    """The definition, one resample at a time: draw test units, average each method's seeds on
    them, subtract."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, a.shape[1], size=(n_boot, a.shape[1]))
    stats = []
    for row in draws:
        da = np.mean([np.mean([run[u] for u in row]) for run in a])
        db = np.mean([np.mean([run[u] for u in row]) for run in b])
        stats.append(da - db)
    stats = np.array(stats)
    return a.mean() - b.mean(), np.percentile(stats, 2.5), np.percentile(stats, 97.5), (stats > 0).mean()


def test_matches_the_literal_definition():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.3, 0.9, (3, 11)), rng.uniform(0.3, 0.9, (2, 11))     # seeds need not match
    got = paired_difference(a, b, n_boot=400, seed=5)
    want = literal_paired(a, b, 400, 5)
    assert [got["difference"], got["low"], got["high"], got["ahead"]] == pytest.approx(list(want), abs=1e-12)


def test_known_answers():
    base = np.random.default_rng(0).uniform(0.2, 0.8, (2, 9))
    shifted = paired_difference(base + 0.05, base, n_boot=200)        # the same volumes, 5 points better
    assert shifted["difference"] == pytest.approx(0.05) and shifted["ahead"] == 1.0
    assert shifted["low"] == pytest.approx(0.05) and shifted["high"] == pytest.approx(0.05)
    same = paired_difference(base, base, n_boot=200)
    assert same["difference"] == 0 and same["ahead"] == 0.0
    # lower-is-better metrics (HD95): smaller is ahead, undefined units drop out
    hd_a, hd_b = np.array([[1.0, np.nan, 2.0]]), np.array([[3.0, 4.0, 5.0]])
    r = paired_difference(hd_a, hd_b, n_boot=100, lower_better=True)
    assert r["units"] == 2 and r["difference"] == pytest.approx(-2.5) and r["ahead"] == 1.0
    with pytest.raises(AlsegError, match="same test units"):
        paired_difference(base, base[:, :5])


def test_report_files_and_cli(tmp_path):
    rng = np.random.default_rng(1)
    data = {m: {b: {s: list(rng.uniform(0.4, 0.7, 6)) for s in (0, 1)} for b in (2, 5)}
            for m in ("random", "coreset", "gcl-coreset")}
    data["gcl-coreset"][5] = {s: [v + 0.2 for v in data["random"][5][s]] for s in (0, 1)}
    run = tmp_path / "run"
    fake_run(run, data)
    m = bootstrap_report(run, n_boot=300, seed=2, compare="gcl-coreset")
    comp = m["compare"]
    assert comp["others"] == ["coreset", "random"] and comp["budgets"] == [2.0, 5.0]
    row = next(r for r in comp["rows"] if r["other"] == "random" and r["budget"] == 5.0)
    assert row["difference"] == pytest.approx(0.2) and row["ahead"] == 1.0
    assert row["per_seed"] == {0: pytest.approx(0.2), 1: pytest.approx(0.2)}
    a = np.array([data["gcl-coreset"][2][s] for s in (0, 1)])
    b = np.array([data["coreset"][2][s] for s in (0, 1)])
    want = paired_difference(a, b, n_boot=300, seed=2)
    got = next(r for r in comp["rows"] if r["other"] == "coreset" and r["budget"] == 2.0)
    assert got["low"] == pytest.approx(want["low"]) and got["high"] == pytest.approx(want["high"])
    # the mean over budgets (table 4's mDICE): seed means per volume, averaged over 2 and 5 %, paired
    seed_mean = {(m, bud): np.mean([data[m][bud][s] for s in (0, 1)], axis=0) for m in data for bud in (2, 5)}
    want = paired_difference(np.stack([seed_mean[("gcl-coreset", 2)], seed_mean[("gcl-coreset", 5)]]),
                             np.stack([seed_mean[("random", 2)], seed_mean[("random", 5)]]), n_boot=300, seed=2)
    mean = next(r for r in comp["means"] if r["other"] == "random")
    assert [mean[k] for k in ("difference", "low", "high", "ahead")] == pytest.approx(
        [want[k] for k in ("difference", "low", "high", "ahead")], abs=1e-12)
    table_means = {r["method"]: r["mean"] for r in m["table"]["means"]}
    assert mean["difference"] == pytest.approx(table_means["gcl-coreset"] - table_means["random"], abs=1e-12)
    assert mean["per_seed"][0] == pytest.approx(np.mean([np.mean(data["gcl-coreset"][bud][0]) - np.mean(data["random"][bud][0])
                                                         for bud in (2, 5)]))
    out = run / "bootstrap"
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "+20.0 [+20.0, +20.0] (100 %)" in md and "| vs | 2% | 5% | mean |" in md
    with open(out / "compare.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
        assert len(rows) == 6 and sorted(r["budget_percent"] for r in rows)[-2:] == ["mean", "mean"]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "compare.json").read_text())["method"] == "gcl-coreset"
    with pytest.raises(AlsegError, match="no such method"):
        bootstrap_report(run, compare="bald", force=True)
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "bootstrap", str(run), "--compare", "gcl-coreset",
                        "--force", "--no-plot", "--n-boot", "100"], capture_output=True, encoding="utf-8")
    assert r.returncode == 0, r.stderr
    assert "gcl-coreset − other" in r.stderr and json.loads(r.stdout)["compare"]["method"] == "gcl-coreset"
    assert "mean" in r.stderr.split("gcl-coreset − other")[1]
    bad = subprocess.run([sys.executable, "-m", "alseg_cli", "bootstrap", str(run), "--compare", "nope",
                          "--force"], capture_output=True, encoding="utf-8")
    assert bad.returncode != 0 and "no such method" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_mean_column_only_over_the_same_budgets(tmp_path):
    """A method without every budget of METHOD gets no mean difference (its mean would be over
    other budgets); its per-budget differences stay."""
    rng = np.random.default_rng(4)
    data = {m: {b: {0: list(rng.uniform(0.4, 0.7, 5))} for b in (2, 5)} for m in ("ntxent", "volume")}
    data["patient"] = {2: {0: list(rng.uniform(0.4, 0.7, 5))}}
    run = tmp_path / "run"
    fake_run(run, data)
    comp = bootstrap_report(run, n_boot=50, compare="ntxent", plot_png=False)["compare"]
    assert [r["other"] for r in comp["means"]] == ["volume"] and comp["means"][0]["budgets"] == [2.0, 5.0]
    assert {(r["other"], r["budget"]) for r in comp["rows"]} == {("patient", 2.0), ("volume", 2.0), ("volume", 5.0)}
