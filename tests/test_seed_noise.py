"""Seed noise (bootstrap's noise.md): seed sd and split-half ranking agreement, against
literal computations, known answers, and through the report and the CLI."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest

from alseg_cli.metrics.report import bootstrap_report
from alseg_cli.metrics.seed_noise import half_splits, seed_sd, split_half_agreement

from test_bootstrap_report import fake_run


def literal_agreement(means, lower_better=False):
    """Every pair of disjoint equal halves, every pair of methods, by hand."""
    methods = sorted(means)
    seeds = sorted(set.intersection(*(set(v) for v in means.values())))
    h = len(seeds) // 2
    halves = []
    for mask in range(1 << len(seeds)):
        a = tuple(s for i, s in enumerate(seeds) if mask >> i & 1)
        if len(a) != h:
            continue
        for mask2 in range(1 << len(seeds)):
            b = tuple(s for i, s in enumerate(seeds) if mask2 >> i & 1)
            if len(b) == h and not set(a) & set(b) and a < b:
                halves.append((a, b))
    pair_scores, tops = [], []
    for a, b in halves:
        ma = {m: sum(means[m][s] for s in a) / h for m in methods}
        mb = {m: sum(means[m][s] for s in b) / h for m in methods}
        if lower_better:
            ma, mb = {m: -v for m, v in ma.items()}, {m: -v for m, v in mb.items()}
        agree = total = 0
        for i in range(len(methods)):
            for j in range(i + 1, len(methods)):
                x, y = ma[methods[i]] - ma[methods[j]], mb[methods[i]] - mb[methods[j]]
                agree += 0.5 if x == 0 or y == 0 else (1 if (x > 0) == (y > 0) else 0)
                total += 1
        pair_scores.append(agree / total)
        tops.append(max(methods, key=ma.get) == max(methods, key=mb.get))
    return sum(pair_scores) / len(pair_scores), sum(tops) / len(tops), len(halves)


def test_half_splits_are_disjoint_equal_and_each_once():
    assert half_splits([0, 1, 2]) == [((0,), (1,)), ((0,), (2,)), ((1,), (2,))]
    five = half_splits(range(5))
    assert len(five) == 15                      # C(5,2) * C(3,2) / 2
    assert all(len(a) == len(b) == 2 and not set(a) & set(b) for a, b in five)
    assert len({frozenset((a, b)) for a, b in five}) == 15
    assert half_splits([3]) == []


@pytest.mark.parametrize("n_seeds,lower", [(3, False), (4, False), (5, True), (6, False)])
def test_agreement_matches_the_literal_definition(n_seeds, lower):
    rng = np.random.default_rng(n_seeds)
    means = {m: {s: float(rng.normal(i * 0.01, 0.02)) for s in range(n_seeds)} for i, m in enumerate("abcd")}
    got = split_half_agreement(means, lower_better=lower)
    pairs, top, splits = literal_agreement(means, lower)
    assert got["splits"] == splits and got["pair_agreement"] == pytest.approx(pairs, abs=1e-12)
    assert got["top_agreement"] == pytest.approx(top, abs=1e-12)


def test_known_answers():
    # a method ahead in every seed: every split agrees
    steady = {"a": {0: 0.9, 1: 0.8, 2: 0.85}, "b": {0: 0.5, 1: 0.4, 2: 0.45}}
    r = split_half_agreement(steady)
    assert r["pair_agreement"] == 1.0 and r["top_agreement"] == 1.0 and r["splits"] == 3
    # the lead swaps with the seed: seed 0 and 1 disagree, seed 2 ties the pair
    flip = {"a": {0: 0.9, 1: 0.4, 2: 0.6}, "b": {0: 0.5, 1: 0.8, 2: 0.6}}
    r = split_half_agreement(flip)
    assert r["pair_agreement"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    # seeds not shared by every method are left out; one method or one seed: nothing to rank
    ragged = {"a": {0: 0.9, 1: 0.8, 7: 0.1}, "b": {0: 0.5, 1: 0.4}}
    assert split_half_agreement(ragged)["seeds"] == [0, 1]
    assert split_half_agreement({"a": {0: 1.0, 1: 1.0}}) is None
    assert split_half_agreement({"a": {0: 1.0}, "b": {0: 0.5}}) is None


def test_seed_sd_is_the_sample_sd_of_seed_means():
    by_seed = {s: {"scores": np.array(v)} for s, v in enumerate([[0.5, 0.7], [0.6, 0.6], [0.9, 0.3], [0.2, 0.4]])}
    assert seed_sd(by_seed) == pytest.approx(statistics.stdev([0.6, 0.6, 0.6, 0.3]))
    assert seed_sd({0: {"scores": np.array([0.5])}}) is None


def test_report_writes_noise_and_cli_prints_it(tmp_path):
    rng = np.random.default_rng(4)
    data = {m: {b: {s: list(rng.uniform(0.4, 0.7, 5)) for s in (0, 1, 2)} for b in (2, 5)}
            for m in ("random", "coreset", "gcl-coreset")}
    data["gcl-coreset"][5] = {s: [v + 0.3 for v in data["random"][5][s]] for s in (0, 1, 2)}
    data["coreset"][5] = {s: [v + 0.15 for v in data["random"][5][s]] for s in (0, 1, 2)}
    run = tmp_path / "run"
    fake_run(run, data)
    m = bootstrap_report(run, n_boot=100)
    rows = {(r["method"], r["budget"]): r for r in m["table"]["rows"]}
    want = statistics.stdev([float(np.mean(data["coreset"][2][s])) for s in (0, 1, 2)])
    assert rows[("coreset", 2.0)]["seed_sd"] == pytest.approx(want)
    at5 = next(r for r in m["noise"]["ranking"] if r["budget"] == 5.0)
    assert at5["pair_agreement"] == 1.0 and at5["top_agreement"] == 1.0     # shifts keep the order per seed
    out = run / "bootstrap"
    md = (out / "noise.md").read_text(encoding="utf-8")
    assert f"{100 * want:.1f} (n=3)" in md and "| 5% | 3 (1 vs 1) | 3 | 100 % | 100 % |" in md
    assert json.loads((out / "noise.json").read_text(encoding="utf-8"))["budgets"] == [2.0, 5.0]
    assert "seed_sd" in (out / "table.csv").read_text(encoding="utf-8").splitlines()[0]
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "bootstrap", str(run), "--force", "--no-plot",
                        "--n-boot", "50"], capture_output=True, encoding="utf-8")
    assert r.returncode == 0, r.stderr
    assert "seed noise" in r.stderr and "pairs alike" in r.stderr
