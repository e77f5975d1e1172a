"""k-center greedy kernel against a literal float64 greedy."""
import numpy as np
import pytest
import torch

from alseg_cli import kcenter_greedy
from alseg_cli.acquisition.kcenter import covering_radius
from alseg_cli.errors import AlsegError


def brute_greedy(x, budget, labeled=(), seed=0):
    """The textbook algorithm in float64: full distance recomputation, first max on ties."""
    x = np.asarray(x, dtype=np.float64)
    centres = list(labeled)
    picks = []
    if not centres:
        first = int(np.random.default_rng(seed).integers(len(x)))
        picks.append(first)
        centres.append(first)
    while len(picks) < budget:
        d = np.sqrt(((x[:, None, :] - x[None, centres, :]) ** 2).sum(-1)).min(1)
        d[centres] = -1.0
        nxt = int(np.argmax(d))
        picks.append(nxt)
        centres.append(nxt)
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_float64_bruteforce(seed):
    x = np.random.default_rng(seed).normal(size=(300, 16)).astype(np.float32)
    assert kcenter_greedy(x, 25, seed=seed, device="cpu") == brute_greedy(x, 25, seed=seed)


def test_matches_with_labelled_and_offset_data():
    # a large common offset makes ||x||^2 - 2x.c + ||c||^2 cancel badly; the kernel must not care
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(400, 32)) + 50.0).astype(np.float32)
    lab = [3, 17, 250, 399]
    got = kcenter_greedy(x, 30, labeled=lab, device="cpu", chunk_size=64)
    assert got == brute_greedy(x, 30, labeled=lab)
    assert not set(got) & set(lab)


def incremental_greedy64(x, budget, labeled):
    """The same float64 greedy, with the nearest-centre distances kept incrementally."""
    x = np.asarray(x, dtype=np.float64)
    min_d = np.full(len(x), np.inf)
    for c in labeled:
        min_d = np.minimum(min_d, ((x - x[c]) ** 2).sum(1))
    min_d[list(labeled)] = -1.0
    picks = []
    for _ in range(budget):
        nxt = int(np.argmax(min_d))
        picks.append(nxt)
        min_d = np.minimum(min_d, ((x - x[nxt]) ** 2).sum(1))
        min_d[nxt] = -1.0
    return picks


@pytest.mark.parametrize("update", ["direct", "filtered"])
def test_offset_large_against_spread_gives_the_float64_greedy(update):
    # 10 + 0.05 N(0, 1): uncentred float32 products put 5 % of points on the wrong labelled
    # centre and the picks left the float64 greedy's at step 35
    rng = np.random.default_rng(11)
    x = (10.0 + 0.05 * rng.normal(size=(5000, 64))).astype(np.float32)
    lab = rng.choice(5000, 100, replace=False).tolist()
    got = kcenter_greedy(x, 80, labeled=lab, device="cpu", update=update)
    assert got == incremental_greedy64(x, 80, lab)


@pytest.mark.parametrize("chunk", [1, 7, 100, 1000])
def test_chunking_invariance(chunk):
    x = np.random.default_rng(1).normal(size=(257, 8)).astype(np.float32)
    ref = kcenter_greedy(x, 20, labeled=[0, 5], device="cpu", chunk_size=10_000)
    assert kcenter_greedy(x, 20, labeled=[0, 5], device="cpu", chunk_size=chunk) == ref


def test_half_precision_inputs_accumulate_in_float32():
    x = np.random.default_rng(2).normal(size=(200, 24)).astype(np.float16)
    ref = brute_greedy(x.astype(np.float64), 15, seed=4)
    assert kcenter_greedy(x, 15, seed=4, device="cpu") == ref
    xb = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    ref_b = brute_greedy(xb.float().numpy(), 15, seed=4)
    assert kcenter_greedy(xb, 15, seed=4, device="cpu") == ref_b


def test_ties_break_to_lowest_index_and_duplicates_are_never_repicked():
    # four identical points and two far ones; after the far ones all distances are 0
    x = np.array([[0, 0]] * 4 + [[10, 0], [0, 10]], dtype=np.float32)
    picks = kcenter_greedy(x, 5, labeled=[0], device="cpu")
    assert picks == [4, 5, 1, 2, 3]
    # equal distances: the lowest index wins
    sq = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    assert kcenter_greedy(sq, 1, labeled=[0], device="cpu") == [1]


def test_determinism_and_seed():
    x = np.random.default_rng(3).normal(size=(150, 4)).astype(np.float32)
    a = kcenter_greedy(x, 10, seed=7, device="cpu")
    assert a == kcenter_greedy(x, 10, seed=7, device="cpu")
    assert a[0] == int(np.random.default_rng(7).integers(150))
    assert len(set(a)) == 10


def test_greedy_radius_is_within_factor_two_of_random_sets():
    x = np.random.default_rng(4).normal(size=(500, 3)).astype(np.float32)
    picks = kcenter_greedy(x, 20, device="cpu")
    r = covering_radius(x, picks)
    # greedy radius equals the distance of the point it would pick next
    nxt = kcenter_greedy(x, 21, device="cpu")[-1]
    d = np.sqrt(((x[picks].astype(np.float64) - x[nxt]) ** 2).sum(1)).min()
    assert r == pytest.approx(d, rel=1e-6)


def test_bad_inputs():
    x = np.zeros((10, 3), np.float32)
    x[4, 1] = np.nan
    with pytest.raises(AlsegError, match="NaN"):
        kcenter_greedy(x, 2, device="cpu")
    ok = np.zeros((10, 3), np.float32)
    with pytest.raises(AlsegError, match="budget"):
        kcenter_greedy(ok, 9, labeled=[0, 1], device="cpu")
    with pytest.raises(AlsegError, match="out of range"):
        kcenter_greedy(ok, 1, labeled=[10], device="cpu")
    assert kcenter_greedy(ok, 0, device="cpu") == []


@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_direct_and_filtered_updates_agree(offset):
    # "direct" is the GPU path, "filtered" the CPU one; both must reproduce the float64 greedy
    x = (np.random.default_rng(6).normal(size=(350, 40)) + offset).astype(np.float32)
    ref = brute_greedy(x, 30, labeled=[1, 2])
    for update in ("direct", "filtered"):
        assert kcenter_greedy(x, 30, labeled=[1, 2], device="cpu", update=update, chunk_size=33) == ref
    with pytest.raises(AlsegError, match="update"):
        kcenter_greedy(x, 3, device="cpu", update="fast")


def clustered(n, d=64, k=40, sub=8, seed=0, dtype=np.float32):
    """A mixture of k Gaussians in a sub-dimensional subspace plus noise: where pruning bites."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, sub)))[0]
    centres = rng.normal(0, 5, (k, sub))
    z = centres[rng.integers(0, k, n)] + rng.normal(0, 0.5, (n, sub))
    return (z @ basis.T + rng.normal(0, 0.05, (n, d))).astype(dtype)


@pytest.mark.parametrize("labelled", [0, 150])
def test_pruned_kernel_gives_the_float64_greedy_and_reads_few_rows(labelled):
    x = clustered(3000)
    lab = list(range(0, 3000, 3000 // labelled)) if labelled else []
    stats = {}
    got = kcenter_greedy(x, 60, labeled=lab, seed=2, device="cpu", update="pruned", stats=stats)
    assert got == incremental_greedy64(x, 60, lab) if lab else got == brute_greedy(x, 60, seed=2)
    # with 150 centres from the start, 2 % of the rows are read per pick; from one centre the
    # first picks must read nearly everything (measured: 47 % over 60 picks, 11 % over 300)
    assert stats["rows_read"] < (0.05 if labelled else 0.6) * 3000 * 60
    for update in ("direct", "filtered"):
        assert kcenter_greedy(x, 60, labeled=lab, seed=2, device="cpu", update=update) == got


@pytest.mark.parametrize("chunk", [7, 500])
def test_pruned_kernel_chunking_half_precision_and_duplicates(chunk):
    x = clustered(1200, seed=3, dtype=np.float16)
    x[600:650] = x[100]                                   # duplicates: ties to the lowest index
    ref = incremental_greedy64(x.astype(np.float64), 40, [5, 6])
    assert kcenter_greedy(x, 40, labeled=[5, 6], device="cpu", update="pruned", chunk_size=chunk) == ref


def test_auto_kernel_on_cpu_is_pruned_from_the_threshold_and_filtered_below(monkeypatch):
    """Below PRUNE_MIN_POINTS the CPU default is the filtered brute kernel (not the direct one,
    which reads x twice); from it on, the pruned kernel."""
    from alseg_cli.acquisition import kcenter as kc

    x = np.random.default_rng(3).standard_normal((400, 16)).astype(np.float32)
    calls = []
    real = kc._update_filtered
    monkeypatch.setattr(kc, "_update_filtered", lambda *a, **k: calls.append(1) or real(*a, **k))
    st = {}
    small = kc.kcenter_greedy(x, 10, labeled=[0], device="cpu", stats=st)
    assert calls and st["rows_read"] is None
    monkeypatch.setattr(kc, "PRUNE_MIN_POINTS", 100)
    calls.clear()
    st = {}
    assert kc.kcenter_greedy(x, 10, labeled=[0], device="cpu", stats=st) == small
    assert not calls and st["rows_read"] is not None
