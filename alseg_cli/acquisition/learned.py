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
from .methods import MethodSpec, SelectionContext, method, top_k
from .options import DEFAULTS


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


@method("coregcn", "CoreGCN: GCN (labelled vs unlabelled) over embeddings, k-center on its features.",
        MethodSpec("embeddings", cold_start=False, embeddings="pixels", labelled=True))
def select_coregcn(ctx: SelectionContext) -> List[int]:
    import torch

    from ..device import seed_everything

    vectors = ctx.need_vectors("coregcn")
    o = ctx.options
    max_nodes = o.gcn_max_nodes
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
    hidden = o.gcn_hidden
    w1 = torch.nn.Linear(x.shape[1], hidden)
    w2 = torch.nn.Linear(hidden, 1)
    drop = torch.nn.Dropout(0.3)
    params = list(w1.parameters()) + list(w2.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4)

    def forward(train: bool):
        drop.train(train)
        h = torch.relu(adj @ w1(x))
        return h, torch.sigmoid(adj @ w2(drop(h)))

    for _ in range(o.gcn_epochs):
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

TYPICLUST_MIN_CLUSTER_SIZE = 5     # official MIN_CLUSTER_SIZE: clusters of <= 5 points are never chosen
# K_NN (20) and MAX_NUM_CLUSTERS (500) are SelectOptions' typiclust_knn and max_clusters


def kmeans(x, k: int, seed: int, n_init: int = 3):
    """k-means++ with ``n_init`` restarts (scikit-learn's Lloyd); returns (labels, centres, inertia).

    The official TypiClust code uses scikit-learn ``KMeans`` up to 50 clusters and
    ``MiniBatchKMeans`` above; alseg uses full k-means at every K (better clusters, same method).
    """
    import torch
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    arr = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    with threadpool_limits(limits=torch.get_num_threads()):   # never more threads than torch was given
        km = KMeans(n_clusters=int(k), n_init=int(n_init), random_state=int(seed)).fit(arr)
    return km.labels_.astype(np.int64), km.cluster_centers_, float(km.inertia_)


def typicality(x, knn: int, squared: bool = False):
    """Typicality(x) = 1 / (mean distance to its ``knn`` nearest other points) (paper, eq. 1).

    x: one cluster's candidate features. The paper's formula uses the L2 distance; the
    official code's faiss ``IndexFlatL2`` returns squared L2 (``squared=True`` reproduces it).
    With ``knn`` < 1 (a lone point) every typicality is 1.
    """
    import torch

    x = torch.as_tensor(x, dtype=torch.float64)
    if x.shape[0] < 2 or knn < 1:
        return torch.ones(x.shape[0], dtype=torch.float64)
    d = torch.cdist(x, x)
    if squared:
        d = d * d
    d.fill_diagonal_(float("inf"))
    near = d.topk(knn, dim=1, largest=False).values
    return 1.0 / (near.mean(1) + 1e-5)      # official epsilon


def typiclust_order(labels: np.ndarray, n_labeled: int, n_clusters: int) -> np.ndarray:
    """Cluster visiting order, fixed once: eligible clusters (more than MIN_CLUSTER_SIZE points)
    by (fewest labelled points, largest, lowest id), then the small ones in the same order."""
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[:n_labeled], minlength=n_clusters)
    ids = np.arange(n_clusters)
    order = ids[np.lexsort((ids, -sizes, covered))]
    order = order[sizes[order] > 0]
    eligible = sizes[order] > TYPICLUST_MIN_CLUSTER_SIZE
    return np.concatenate([order[eligible], order[~eligible]]), int(eligible.sum())


def typiclust_pick(x, labels: np.ndarray, n_labeled: int, k: int, knn: int = DEFAULTS.typiclust_knn,
                   squared: bool = False) -> List[int]:
    """TypiClust's selection on given clusters; returns positions into ``x`` (the first
    ``n_labeled`` rows are labelled and never picked).

    As the official ``select_samples``: visit the eligible clusters round-robin in
    ``typiclust_order``; in each take the most typical of its not-yet-chosen unlabelled
    members, typicality computed among those members with K = min(knn, n // 2). Where the
    official code crashes (a cluster runs out of members, or the budget outgrows the eligible
    clusters) alseg skips exhausted clusters and, once every eligible cluster is exhausted,
    continues round-robin over the small clusters, largest first.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    order, n_eligible = typiclust_order(labels, n_labeled, n_clusters)
    free = np.ones(labels.size, bool)
    free[:n_labeled] = False
    remaining = np.bincount(labels[free], minlength=n_clusters)
    if k > int(free.sum()):
        raise AlsegError(f"typiclust: budget {k} exceeds the {int(free.sum())} unlabelled points")
    picks: List[int] = []
    tiers = [order[:n_eligible], order[n_eligible:]]
    for tier in tiers:
        step = 0
        while len(picks) < k and remaining[tier].sum() > 0:
            j = int(tier[step % tier.size])
            step += 1
            if remaining[j] == 0:
                continue
            members = np.flatnonzero((labels == j) & free)
            typ = typicality(x[members], min(knn, members.size // 2), squared).numpy()
            best = int(members[int(np.argmax(typ))])     # ties: the lowest position, as np.argmax
            picks.append(best)
            free[best] = False
            remaining[j] -= 1
    return picks


@method("typiclust", "TypiClust: k-means++ (K = |L| + budget, cap 500); round-robin over clusters of "
        "more than 5 points, fewest labelled then largest first, most typical point of each; "
        "past those, the small clusters.", MethodSpec("embeddings", cold_start=True, embeddings="pixels"))
def select_typiclust(ctx: SelectionContext) -> List[int]:
    import torch

    vectors = ctx.need_vectors("typiclust")
    nodes = np.concatenate([ctx.labeled, ctx.pool])
    x = torch.from_numpy(np.asarray(vectors[nodes], dtype=np.float64))
    n_clusters = min(ctx.labeled.size + ctx.k, ctx.options.max_clusters, nodes.size)
    labels = kmeans(x, n_clusters, ctx.seed)[0]
    picks = typiclust_pick(x, labels, ctx.labeled.size, ctx.k, knn=ctx.options.typiclust_knn,
                           squared=ctx.options.typicality == "sqeuclidean")
    return [int(nodes[p]) for p in picks]


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


@method("vaal", "VAAL: VAE (latent 32) + discriminator labelled=1/unlabelled=0; least-labelled-looking.",
        MethodSpec("dataset", cold_start=False, labelled=True))
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
    batch, beta, adv = o.vaal_batch, 1.0, 1.0

    def encode(x):
        mu, logvar = heads(enc(x)).chunk(2, dim=1)
        z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
        return mu, logvar, z

    def vae_loss(x, mu, logvar, z):
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        return F.mse_loss(dec(z), x) + beta * kl

    steps = o.vaal_epochs * max(1, -(-unl_x.shape[0] // batch))
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
