"""`alseg stats` (paper section 3.2.1) against a literal double loop over pairs."""
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from alseg_cli.api import stats
from alseg_cli.metrics.diversity import mean_pairwise_deviation, slice_diversity
from alseg_cli.store import DatasetStore


def literal(x):
    pairs = list(itertools.combinations(range(len(x)), 2))
    return float(np.mean([np.abs(x[i].astype(np.float64) - x[j]).mean() for i, j in pairs]))


def test_sorted_formula_equals_the_pairs():
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 20):
        x = rng.random((n, 3, 5, 4)).astype(np.float32)
        assert mean_pairwise_deviation(x) == pytest.approx(literal(x), rel=1e-12, abs=1e-12)
    x = np.repeat(rng.random((1, 8)), 4, axis=0)              # identical slices: 0 (ties)
    assert mean_pairwise_deviation(x) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        mean_pairwise_deviation(x[:1])


def test_group_values_equal_a_literal_recomputation(phantom_store):
    store = DatasetStore(phantom_store)
    res = slice_diversity(store, "train")
    idx = store.indices("train")
    img = store.images(idx)
    pats, vols, z = store.patients[idx], store.volumes[idx], store.z[idx]
    assert res["dataset"]["deviation"] == pytest.approx(literal(img), rel=1e-9)
    for name, keys in (("patient", pats), ("volume", vols)):
        want = [literal(img[keys == k]) for k in np.unique(keys) if (keys == k).sum() > 1]
        assert res[name]["deviation"] == pytest.approx(np.mean(want), rel=1e-9)
        assert res[name]["groups"] == len(want)
    adj = []
    for v in np.unique(vols):
        order = np.flatnonzero(vols == v)[np.argsort(z[vols == v])]
        adj += [np.abs(img[a].astype(np.float64) - img[b]).mean() for a, b in zip(order[:-1], order[1:])]
    assert res["adjacent"]["deviation"] == pytest.approx(np.mean(adj), rel=1e-9)
    # neighbours are more alike than the whole set
    assert res["adjacent"]["deviation"] < res["dataset"]["deviation"]


def test_cli_prints_one_manifest_and_writes_it(phantom_store, tmp_path):
    out = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "stats", str(phantom_store), "-o", str(out)],
                       capture_output=True, text=True, check=True)
    m = json.loads(r.stdout)
    assert m["kind"] == "stats" and json.loads(out.read_text())["diversity"] == m["diversity"]
    assert set(m["diversity"]) == {"dataset", "patient", "volume", "adjacent"}
    bad = subprocess.run([sys.executable, "-m", "alseg_cli", "stats", str(phantom_store), "--split", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stdout == "" and "split 'nope' has no slices" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    with pytest.raises(Exception, match="exists"):
        stats(phantom_store, out=out)
