"""Pieces of the learned methods against literal computations."""
import numpy as np
import pytest
import torch

from alseg_cli.acquisition.learned import coregcn_adjacency, kmeans, typicality


def test_typicality_hand_values():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    assert typicality(x, 1).tolist() == pytest.approx([1.0, 1.0, 0.5], rel=1e-6)
    # knn 2: mean of the two other distances
    assert typicality(x, 2).tolist() == pytest.approx([1 / 2.0, 1 / 1.5, 1 / 2.5], rel=1e-6)


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    g = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = torch.from_numpy(np.concatenate([c + g.normal(0, 0.3, (30, 2)) for c in centres]).astype(np.float32))
    labels, c = kmeans(x, 3, seed=1)
    for b in range(3):
        assert len(set(labels[b * 30:(b + 1) * 30])) == 1
    assert len(set(labels)) == 3
    assert (kmeans(x, 3, seed=1)[0] == labels).all()


def test_coregcn_adjacency_matches_literal_construction():
    x = torch.rand(6, 4)
    xn = x.double().numpy()
    xn = xn / np.linalg.norm(xn, axis=1, keepdims=True)
    adj = xn @ xn.T - np.eye(6)
    adj = adj @ np.diag(1.0 / adj.sum(0)) + np.eye(6)       # reference: column-normalise, add I
    np.testing.assert_allclose(coregcn_adjacency(x).double().numpy(), adj, atol=1e-5)
