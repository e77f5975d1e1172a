"""Acquisition methods that fit a small model at selection time: CoreGCN, TypiClust, VAAL.

All randomness comes from generators seeded with the run's seed (torch layers are built
after ``seed_everything`` because nn.Module init uses the global generator), and the
reference code's defects (method.md section 9) are avoided: CoreGCN maps graph positions
back to dataset indices explicitly, VAAL's discriminator labels the unlabelled set 0.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import AlsegError
from .kcenter import kcenter_greedy
from .methods import METHODS, SelectionContext, top_k


# ---- CoreGCN (Caramalau et al. 2021) -------------------------------------------------

def coregcn_adjacency(x):
    """A = D^-1-normalised (X X^T - I) + I over L2-normalised rows (reference construction).

    Negative cosine similarities are clipped to 0 so the column sums used for normalising
    stay positive (non-negative features, e.g. ReLU-pooled CNN features, are unaffected).
    """
    import torch

    x = torch.nn.functional.normalize(x.float(), dim=1)
    adj = (x @ x.T).clamp_min(0.0) - torch.eye(x.shape[0])
    col = adj.sum(dim=0).clamp_min(1e-8)
    return adj / col[None, :] + torch.eye(x.shape[0])


@METHODS.register("coregcn", "CoreGCN: GCN (labelled vs unlabelled) over embeddings, k-center on its features.",
                  needs="embeddings", cold_start=False)
def select_coregcn(ctx: SelectionContext) -> List[int]:
    import torch

    from ..device import seed_everything

    vectors = ctx.need_vectors("coregcn")
    o = ctx.options
    max_nodes = int(o.get("gcn_max_nodes", 2048))
    rng = np.random.default_rng(ctx.seed)
    pool = ctx.pool
    # the dense N x N adjacency is the method's; subsample the unlabelled pool when large
    if pool.size > max(ctx.k, max_nodes - ctx.labeled.size):
        keep = max(ctx.k, max_nodes - ctx.labeled.size)
        pool = np.sort(rng.choice(pool, size=keep, replace=False))
    nodes = np.concatenate([ctx.labeled, pool])
    x = torch.from_numpy(np.asarray(vectors[nodes], dtype=np.float32))
    adj = coregcn_adjacency(x)
    target = torch.zeros(nodes.size, 1)
    target[: ctx.labeled.size] = 1.0
    seed_everything(ctx.seed)
    hidden = int(o.get("gcn_hidden", 128))
    w1 = torch.nn.Linear(x.shape[1], hidden)
    w2 = torch.nn.Linear(hidden, 1)
    drop = torch.nn.Dropout(0.3)
    params = list(w1.parameters()) + list(w2.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4)

    def forward(train: bool):
        drop.train(train)
        h = torch.relu(adj @ w1(x))
        return h, torch.sigmoid(adj @ w2(drop(h)))

    for _ in range(int(o.get("gcn_epochs", 200))):
        opt.zero_grad()
        _, out = forward(True)
        torch.nn.functional.binary_cross_entropy(out, target).backward()
        opt.step()
    with torch.no_grad():
        feats, _ = forward(False)
    picks = kcenter_greedy(feats.numpy(), ctx.k, labeled=np.arange(ctx.labeled.size), seed=ctx.seed,
                           device="cpu")
    return [int(nodes[p]) for p in picks]       # graph positions -> dataset indices


# ---- TypiClust (Hacohen et al. 2022) -------------------------------------------------

def kmeans(x, k: int, seed: int, iters: int = 50):
    """Seeded k-means++ initialisation then Lloyd iterations; returns (labels, centres)."""
    import torch

    g = np.random.default_rng(seed)
    n = x.shape[0]
    centres = [int(g.integers(n))]
    d2 = ((x - x[centres[0]]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2.double().numpy()
        total = p.sum()
        nxt = int(g.choice(n, p=p / total)) if total > 0 else int(g.integers(n))
        centres.append(nxt)
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    c = x[centres].clone()
    labels = None
    for _ in range(iters):
        new = torch.cdist(x, c).argmin(1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0                      # an emptied cluster keeps its old centre
        c[filled] = sums[filled] / counts[filled, None].to(x.dtype)
    return labels.numpy(), c


def typicality(x, knn: int):
    """1 / mean distance to the ``knn`` nearest other points (x: one cluster's features)."""
    import torch

    if x.shape[0] < 2 or knn < 1:
        return torch.ones(x.shape[0])
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    near = d.topk(knn, dim=1, largest=False).values
    return 1.0 / (near.mean(1) + 1e-8)


@METHODS.register("typiclust", "TypiClust: k-means (K = |L| + budget, cap 500); most typical point of the largest "
                  "uncovered clusters.", needs="embeddings")
def select_typiclust(ctx: SelectionContext) -> List[int]:
    import torch

    vectors = ctx.need_vectors("typiclust")
    nodes = np.concatenate([ctx.labeled, ctx.pool])
    x = torch.from_numpy(np.asarray(vectors[nodes], dtype=np.float32))
    n_clusters = min(ctx.labeled.size + ctx.k, int(ctx.options.get("max_clusters", 500)), nodes.size)
    labels, _ = kmeans(x, n_clusters, ctx.seed)
    is_lab = np.zeros(nodes.size, bool)
    is_lab[: ctx.labeled.size] = True
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[is_lab], minlength=n_clusters)
    knn_max = int(ctx.options.get("typiclust_knn", 20))
    picks: List[int] = []
    taken = is_lab.copy()
    untaken = np.bincount(labels[~taken], minlength=n_clusters)
    while len(picks) < ctx.k:
        free = untaken > 0
        # fewest labelled points first, then the largest cluster, then the lowest cluster id
        order = np.lexsort((np.arange(n_clusters), -sizes, covered))
        j = next(int(c) for c in order if free[c])
        members = np.flatnonzero(labels == j)
        typ = typicality(x[members], min(knn_max, members.size // 2)).numpy()
        cand = members[~taken[members]]
        best = top_k(cand, typ[np.searchsorted(members, cand)], 1)[0]
        picks.append(int(nodes[best]))
        taken[best] = True
        untaken[j] -= 1
        covered[j] += 1
    return picks


# ---- VAAL (Sinha et al. 2019) --------------------------------------------------------

def _vaal_nets(channels: int, latent: int = 32):
    import torch.nn as nn

    enc = nn.Sequential(nn.Conv2d(channels, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.ReLU(), nn.Flatten())
    heads = nn.Linear(128 * 4 * 4, 2 * latent)
    dec = nn.Sequential(nn.Linear(latent, 128 * 4 * 4), nn.Unflatten(1, (128, 4, 4)),
                        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.ConvTranspose2d(32, channels, 4, 2, 1))
    disc = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 1))
    return enc, heads, dec, disc


@METHODS.register("vaal", "VAAL: VAE (latent 32) + discriminator labelled=1/unlabelled=0; least-labelled-looking.",
                  needs="dataset", cold_start=False)
def select_vaal(ctx: SelectionContext) -> List[int]:
    import torch
    import torch.nn.functional as F

    from ..device import seed_everything, torch_generator

    if ctx.labeled.size == 0:
        raise AlsegError("vaal needs labelled slices to tell apart from unlabelled ones; "
                         "use --method random or coreset for round 0")
    o = ctx.options
    size = 32                                  # VAE works on 32 x 32 thumbnails (cheap on CPU)
    imgs = torch.from_numpy(np.asarray(ctx.store.images(), dtype=np.float32))
    imgs = F.interpolate(imgs, size=(size, size), mode="area")
    lab_x, unl_x = imgs[ctx.labeled], imgs[ctx.pool]
    seed_everything(ctx.seed)
    enc, heads, dec, disc = _vaal_nets(imgs.shape[1])
    vae_params = list(enc.parameters()) + list(heads.parameters()) + list(dec.parameters())
    opt_vae = torch.optim.Adam(vae_params, lr=5e-4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4)
    g = torch_generator(ctx.seed)
    batch, beta, adv = int(o.get("vaal_batch", 32)), 1.0, 1.0

    def encode(x):
        mu, logvar = heads(enc(x)).chunk(2, dim=1)
        z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
        return mu, logvar, z

    def vae_loss(x, mu, logvar, z):
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        return F.mse_loss(dec(z), x) + beta * kl

    steps = int(o.get("vaal_epochs", 5)) * max(1, -(-unl_x.shape[0] // batch))
    for _ in range(steps):
        lb = lab_x[torch.randint(lab_x.shape[0], (batch,), generator=g)]
        ub = unl_x[torch.randint(unl_x.shape[0], (batch,), generator=g)]
        # VAE step: reconstruct both sets and fool the discriminator into calling everything labelled
        for m in (enc, heads, dec):
            m.train()
        mu_l, lv_l, z_l = encode(lb)
        mu_u, lv_u, z_u = encode(ub)
        ones = torch.ones(batch, 1)
        loss = vae_loss(lb, mu_l, lv_l, z_l) + vae_loss(ub, mu_u, lv_u, z_u) + adv * (
            F.binary_cross_entropy_with_logits(disc(mu_l), ones)
            + F.binary_cross_entropy_with_logits(disc(mu_u), ones))
        opt_vae.zero_grad()
        loss.backward()
        opt_vae.step()
        # discriminator step: labelled = 1, unlabelled = 0
        with torch.no_grad():
            mu_l, mu_u = encode(lb)[0], encode(ub)[0]
        d_loss = (F.binary_cross_entropy_with_logits(disc(mu_l), ones)
                  + F.binary_cross_entropy_with_logits(disc(mu_u), torch.zeros(batch, 1)))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    for m in (enc, heads, dec, disc):
        m.eval()
    with torch.no_grad():
        p_lab = torch.cat([torch.sigmoid(disc(heads(enc(unl_x[i:i + 256])).chunk(2, dim=1)[0]))[:, 0]
                           for i in range(0, unl_x.shape[0], 256)]).numpy()
    # least sure the slice is labelled = lowest discriminator probability
    return top_k(ctx.pool, -p_lab, ctx.k)
