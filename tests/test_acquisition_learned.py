"""Pieces of the learned methods against literal computations."""
import numpy as np
import pytest
import torch

from alseg_cli.acquisition.learned import coregcn_adjacency, kmeans, typicality


def test_typicality_hand_values():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    assert typicality(x, 1).tolist() == pytest.approx([1.0, 1.0, 0.5], rel=1e-4)
    # knn 2: mean of the two other distances
    assert typicality(x, 2).tolist() == pytest.approx([1 / 2.0, 1 / 1.5, 1 / 2.5], rel=1e-4)
    # the official code's faiss IndexFlatL2 distances are squared
    assert typicality(x, 2, squared=True).tolist() == pytest.approx([1 / 5.0, 1 / 2.5, 1 / 6.5], rel=1e-4)


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    g = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = torch.from_numpy(np.concatenate([c + g.normal(0, 0.3, (30, 2)) for c in centres]).astype(np.float32))
    labels, c, _ = kmeans(x, 3, seed=1)
    for b in range(3):
        assert len(set(labels[b * 30:(b + 1) * 30])) == 1
    assert len(set(labels)) == 3
    assert (kmeans(x, 3, seed=1)[0] == labels).all()


def test_kmeans_inertia_as_good_as_standard_kmeans():
    from sklearn.cluster import KMeans

    g = np.random.default_rng(3)
    x = np.concatenate([g.normal(c, 1.0, (40, 16)) for c in g.normal(0, 4, (30, 16))])
    for k in (29, 43):
        ours = np.median([kmeans(torch.from_numpy(x), k, seed=s)[2] for s in range(5)])
        ref = np.median([KMeans(n_clusters=k, n_init=1, random_state=s).fit(x).inertia_ for s in range(5)])
        assert ours <= 1.02 * ref


def official_typiclust(features, labels, n_labeled, budget, squared=False):
    """The official deep-al select_samples, literally (pandas sort and faiss kNN written out)."""
    labels = labels.copy()
    existing = np.arange(n_labeled)
    ids, sizes = np.unique(labels, return_counts=True)
    lab_counts = np.bincount(labels[existing], minlength=len(ids))
    rows = [(int(c), int(n), int(lab_counts[c])) for c, n in zip(ids, sizes) if n > 5]   # MIN_CLUSTER_SIZE
    rows.sort(key=lambda r: (r[2], -r[1]))          # existing_count, then neg_cluster_size (stable)
    labels[existing] = -1
    selected = []
    for i in range(budget):
        cluster = rows[i % len(rows)][0]
        indices = (labels == cluster).nonzero()[0]
        feats = features[indices]
        k = min(20, len(indices) // 2)
        d = np.sqrt(((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1))
        if squared:
            d = d ** 2
        nn = np.sort(d, axis=1)[:, 1:k + 1]          # drop self, as faiss's first neighbour
        typ = 1 / (nn.mean(axis=1) + 1e-5)
        idx = indices[typ.argmax()]
        selected.append(idx)
        labels[idx] = -1
    return selected


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the literal code's mean over 0 neighbours
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("n_labeled,budget", [(0, 12), (20, 30), (35, 60)])
def test_typiclust_picks_equal_the_official_algorithm_on_the_same_clusters(squared, n_labeled, budget):
    from alseg_cli.acquisition.learned import typiclust_pick

    g = np.random.default_rng(n_labeled + budget)
    x = g.normal(size=(400, 8))
    labels = g.integers(0, n_labeled + budget, 400)
    labels[:40] = np.arange(40) % 9                     # some large clusters hold the labelled points
    labels[g.random(400) < 0.05] = n_labeled + budget   # ... and a tiny one
    labels = np.unique(labels, return_inverse=True)[1]
    ref = official_typiclust(x, labels, n_labeled, budget, squared)
    ours = typiclust_pick(torch.from_numpy(x), labels, n_labeled, budget, squared=squared)
    assert ours == [int(i) for i in ref]
    assert min(ours) >= n_labeled and len(set(ours)) == budget


def test_typiclust_never_picks_small_clusters_while_large_ones_have_points():
    from alseg_cli.acquisition.learned import typiclust_pick

    g = np.random.default_rng(0)
    x = g.normal(size=(60, 4))
    labels = np.array([0] * 30 + [1] * 20 + [2] * 5 + [3] * 5)   # clusters 2, 3: 5 points, never chosen first
    picks = typiclust_pick(torch.from_numpy(x), labels, 0, 50)
    assert set(labels[picks]) == {0, 1}
    # beyond what the eligible clusters hold (the official code crashes): the small clusters,
    # never a labelled point, exact count
    picks = typiclust_pick(torch.from_numpy(x), labels, 3, 57)
    assert len(picks) == len(set(picks)) == 57 and min(picks) >= 3
    assert set(labels[picks[:47]]) == {0, 1} and set(labels[picks[47:]]) == {2, 3}


def test_coregcn_adjacency_matches_literal_construction():
    x = torch.rand(6, 4)
    xn = x.double().numpy()
    xn = xn / np.linalg.norm(xn, axis=1, keepdims=True)
    adj = xn @ xn.T - np.eye(6)
    adj = adj @ np.diag(1.0 / adj.sum(0)) + np.eye(6)       # reference: column-normalise, add I
    np.testing.assert_allclose(coregcn_adjacency(x).double().numpy(), adj, atol=1e-5)
