"""Group batch sampler invariants (appendix C)."""
import itertools

import numpy as np
import pytest

from alseg_cli import group_batches
from alseg_cli.encoders.sampler import default_batch_size, tuple_size


def toy_pool():
    """5 patients: p0..p2 with two volumes of 4 slices, p3 one volume of 5, p4 two volumes
    where one has a single slice."""
    patients, volumes, z = [], [], []
    layout = {"p0": [4, 4], "p1": [4, 4], "p2": [4, 4], "p3": [5], "p4": [3, 1]}
    for p, sizes in layout.items():
        for k, size in enumerate(sizes):
            for s in range(size):
                patients.append(p)
                volumes.append(f"{p}_v{k}")
                z.append(s)
    return np.array(patients), np.array(volumes), np.array(z)


ALL_GROUPS = [set(c) for r in range(1, 4) for c in itertools.combinations(["slice", "volume", "patient"], r)]


@pytest.mark.parametrize("groups", ALL_GROUPS, ids=lambda g: "+".join(sorted(g)))
def test_tuples_order_membership_and_distinct_patients(groups):
    pat, vol, z = toy_pool()
    t = tuple_size(groups)
    bs = default_batch_size(groups)
    batches = group_batches(pat, vol, z, groups, bs, seed=5)
    leaders = []
    for batch in batches:
        assert len(batch) % t == 0 and len(batch) <= max(bs, t)
        tuples = [batch[i:i + t] for i in range(0, len(batch), t)]
        assert len({pat[tp[0]] for tp in tuples}) == len(tuples)   # distinct patients
        for tp in tuples:
            s, rest = tp[0], tp[1:]
            leaders.append(s)
            for kind in ("slice", "volume", "patient"):
                if kind not in groups:
                    continue
                m = rest.pop(0)
                assert pat[m] == pat[s]
                same_vol = vol == vol[s]
                if kind == "slice":
                    assert vol[m] == vol[s]
                    if same_vol.sum() == 1:
                        assert m == s                      # one-slice volume repeats itself
                    else:
                        assert abs(z[m] - z[s]) == 1       # edge slices take their one neighbour
                elif kind == "volume":
                    assert vol[m] == vol[s]
                    assert m != s or same_vol.sum() == 1
                else:
                    n_vols = len(set(vol[pat == pat[s]]))
                    if n_vols > 1:
                        assert vol[m] != vol[s]
                    else:
                        assert vol[m] == vol[s] and m != s  # one-volume patient: same volume
            assert not rest
    assert sorted(leaders) == list(range(len(pat)))   # every slice leads one tuple


def test_batch_sizes_follow_paper():
    assert default_batch_size({"volume"}) == 8 and tuple_size({"volume"}) == 2
    assert default_batch_size({"volume", "patient"}) == 9
    assert default_batch_size({"volume", "patient", "slice"}) == 8


def test_reproducible_and_reshuffled():
    pat, vol, z = toy_pool()
    a = group_batches(pat, vol, z, {"volume", "patient"}, 9, seed=1)
    b = group_batches(pat, vol, z, {"volume", "patient"}, 9, seed=1)
    c = group_batches(pat, vol, z, {"volume", "patient"}, 9, seed=2)
    assert a == b and a != c


def test_full_batches_when_patients_allow():
    # 10 patients with equal slices: every batch but possibly the last is full
    pat = np.repeat(np.arange(10), 6)
    vol = np.repeat(np.arange(20), 3)
    z = np.tile(np.arange(3), 20)
    batches = group_batches(pat, vol, z, {"volume"}, 8, seed=0)
    assert all(len(b) == 8 for b in batches)
    assert len(batches) == 60 // 4


def test_no_groups_is_plain_shuffle():
    pat, vol, z = toy_pool()
    batches = group_batches(pat, vol, z, set(), 8, seed=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(pat))) and all(len(b) <= 8 for b in batches)


def test_bad_inputs():
    pat, vol, z = toy_pool()
    with pytest.raises(ValueError):
        group_batches(pat, vol, z, {"frame"}, 8, 0)
    with pytest.raises(ValueError):
        group_batches(pat, vol[:-1], z, {"volume"}, 8, 0)
    with pytest.raises(ValueError):
        group_batches(pat, vol, z, {"volume"}, 0, 0)
