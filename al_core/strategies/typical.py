"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022) and ProbCover (Yehuda et al., NeurIPS 2022):
representative, label-free picks for small budgets, on the model's penultimate-layer embeddings.

Both strategies embed the candidates and the labelled set together (the labelled rows last) and
return candidate rows only.
"""

from __future__ import annotations

import numpy as np
import torch

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy
from al_core.strategies.functions import CHUNK_ELEMENTS, _tensor, badge_seeding, canonical_order, centred

NEIGHBOURS = 20  # TypiClust: typicality from the mean distance to this many nearest neighbours
PURITY = 0.95  # ProbCover: the purity the chosen delta keeps (the paper's alpha)


def _chunks(x: torch.Tensor, y: torch.Tensor):
    """(start, Euclidean distances of rows start.. of `x` to every row of `y`), in chunks of rows."""
    step = max(1, CHUNK_ELEMENTS // max(y.shape[0], 1))
    yy = y.pow(2).sum(1)
    for s in range(0, x.shape[0], step):
        xs = x[s : s + step]
        d2 = xs.pow(2).sum(1, keepdim=True) + yy[None, :] - 2.0 * (xs @ y.T)
        yield s, d2.clamp_(min=0).sqrt_()


def kmeans_labels(x, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means cluster of every row (KMeans up to 50 clusters, MiniBatchKMeans beyond, as the paper's code).

    Initial centres from `rng`: k-means++ (`badge_seeding`) up to 50 clusters, distinct random
    rows beyond. k-means++ costs a pass over the rows per centre: scikit-learn's took 115 s for
    500 clusters of 3,000 x 512 rows on a 2-core VM, ours 45 s for 2,000 of 11,000 x 512.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    # About the mean and in the canonical row order: the clusters depend on the geometry alone, not
    # on where the points sit or the order of the rows (translated, rotated or permuted: the same).
    (t,) = centred(_tensor(x, "embeddings"))
    order = canonical_order(t.pow(2).sum(1))
    t = t[order]
    n_clusters = min(n_clusters, t.shape[0])
    if n_clusters <= 50:
        init = t[torch.as_tensor(badge_seeding(t, n_clusters, rng), device=t.device)].cpu().numpy()
        km = KMeans(n_clusters, init=init, n_init=1)
    else:
        init = t.cpu().numpy()[np.sort(rng.choice(t.shape[0], n_clusters, replace=False))]
        km = MiniBatchKMeans(n_clusters, init=init, n_init=1, batch_size=4096, random_state=int(rng.integers(2**31 - 1)))
    labels = np.empty(t.shape[0], dtype=np.int64)
    labels[order.cpu().numpy()] = km.fit_predict(t.cpu().numpy())
    return labels


def typicality(x: torch.Tensor, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """1 / mean distance of each row to its `neighbours` nearest other rows (fewer in a smaller set; inf alone)."""
    k = min(neighbours, x.shape[0] - 1)
    if k < 1:
        return torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    # [:, 1:]: drop itself (distance 0)
    out = [d.topk(k + 1, dim=1, largest=False).values[:, 1:].double().mean(1) for _, d in _chunks(x, x)]
    return 1.0 / torch.cat(out).cpu()


def typiclust_from_labels(embeddings, labels: np.ndarray, labelled_idx, k: int) -> np.ndarray:
    """TypiClust's picks given the clusters: each the most typical row of the largest cluster holding
    no labelled or chosen row (ties: the lowest cluster id, then the lowest row). Should every
    non-empty cluster hold one, the clusters with the fewest such rows are used instead."""
    (x,) = centred(_tensor(embeddings, "embeddings"))
    labels = np.asarray(labels)
    taken = np.zeros(len(labels), dtype=bool)
    taken[np.asarray(labelled_idx, dtype=np.int64)] = True
    size = np.bincount(labels, minlength=labels.max(initial=0) + 1)
    out: list[int] = []
    for _ in range(k):
        held = np.bincount(labels[taken], minlength=len(size))
        free = (size > held) & (held == held[size > held].min())  # non-exhausted clusters with the fewest taken rows
        c = int(np.flatnonzero(free)[np.argmax(size[free])])
        members = np.flatnonzero(labels == c)
        typ = typicality(x[torch.as_tensor(members, device=x.device)]).numpy()
        typ[taken[members]] = -np.inf
        j = int(members[np.argmax(typ)])
        out.append(j)
        taken[j] = True
    return np.asarray(out, dtype=np.int64)


def typiclust_select(embeddings, labelled_idx, k: int, rng: np.random.Generator) -> np.ndarray:
    """TypiClust (Hacohen et al., ICML 2022): `k` row indices of `embeddings`, none labelled, in the order chosen.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor, shape (N, D)
        Every point, labelled ones included.
    labelled_idx : array_like of int
        Rows already labelled.
    k : int
        Picks, at most the unlabelled rows.
    rng : numpy.random.Generator
        Seeds the k-means clustering.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        The rows are clustered into len(labelled_idx) + k clusters (k-means); each pick is the most
        typical row (1 / mean distance to its 20 nearest neighbours in its cluster, fewer where the
        cluster is smaller) of the largest cluster holding no labelled or chosen row.
    """
    x = _tensor(embeddings, "embeddings")
    labelled_idx = np.asarray(labelled_idx, dtype=np.int64).reshape(-1)
    if not 0 <= k <= x.shape[0] - len(np.unique(labelled_idx)):
        raise ValueError(f"cannot choose {k} of {x.shape[0] - len(labelled_idx)} unlabelled rows")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    labels = kmeans_labels(x, len(labelled_idx) + k, rng)
    return typiclust_from_labels(x, labels, labelled_idx, k)


def purity_delta(embeddings, pseudo_labels, purity: float = PURITY) -> float:
    """ProbCover's delta: the largest radius whose balls are pure for at least `purity` of the rows.

    A row's ball {j : d(i, j) < delta} is pure when every row in it shares its pseudo-label, i.e.
    when delta <= r_i, its distance to the nearest row of another label. The fraction of pure balls
    falls as delta grows, so the largest delta keeping it >= `purity` is an order statistic of r
    (exact, where the paper scans a grid of deltas).
    """
    (x,) = centred(_tensor(embeddings, "embeddings"))
    lab = torch.as_tensor(np.asarray(pseudo_labels), device=x.device)
    r = []
    for s, d in _chunks(x, x):
        other = lab[s : s + d.shape[0], None] != lab[None, :]
        r.append(torch.where(other, d, torch.full_like(d, float("inf"))).min(1).values)
    r = np.sort(torch.cat(r).cpu().double().numpy())
    j = int(np.floor((1.0 - purity) * len(r) + 1e-9))
    return float(r[min(j, len(r) - 1)])


def ball_graph(embeddings, delta: float):
    """The delta-ball graph as a scipy CSR matrix: row i holds the rows j with d(i, j) < delta (i itself included)."""
    import scipy.sparse as sp

    (x,) = centred(_tensor(embeddings, "embeddings"))
    rows, cols = [], []
    for s, d in _chunks(x, x):
        i, j = torch.nonzero(d < delta, as_tuple=True)
        rows.append((i + s).cpu().numpy())
        cols.append(j.cpu().numpy())
    rows.append(np.arange(x.shape[0]))  # a point covers itself, even at delta 0
    cols.append(np.arange(x.shape[0]))
    n = x.shape[0]
    a = sp.csr_matrix((np.ones(sum(map(len, rows)), dtype=np.int64), (np.concatenate(rows), np.concatenate(cols))), (n, n))
    a = a.maximum(a.T).tocsr()  # symmetric, whatever the rounding of the chunked distances
    a.data[:] = 1  # the diagonal, listed twice where delta > 0
    return a


def probcover_select(embeddings, labelled_idx, k: int, delta: float) -> np.ndarray:
    """ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage of the delta-ball graph.

    Parameters
    ----------
    embeddings : array_like or torch.Tensor, shape (N, D)
        Every point, labelled ones included.
    labelled_idx : array_like of int
        Rows already labelled: they and the rows within delta of them start covered.
    k : int
        Picks, at most the unlabelled rows.
    delta : float
        Ball radius (Euclidean, d < delta); `purity_delta` gives the paper's choice.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        Each pick the unlabelled, unchosen row whose ball holds the most rows not yet covered
        (ties: the row nearest the points' mean, `canonical_order`); its ball is then covered.
    """
    a = ball_graph(embeddings, delta)
    n = a.shape[0]
    (x,) = centred(_tensor(embeddings, "embeddings"))
    rank = np.empty(n, dtype=np.int64)  # ties go to the first row in the canonical order, not the lowest index
    rank[canonical_order(x.pow(2).sum(1)).cpu().numpy()] = np.arange(n)
    labelled_idx = np.asarray(labelled_idx, dtype=np.int64).reshape(-1)
    if not 0 <= k <= n - len(np.unique(labelled_idx)):
        raise ValueError(f"cannot choose {k} of {n - len(labelled_idx)} unlabelled rows")
    covered = np.zeros(n, dtype=bool)
    if len(labelled_idx):
        covered[a[labelled_idx].indices] = True
    degree = np.asarray(a @ (~covered).astype(np.int64)).ravel()  # uncovered rows in each ball
    blocked = np.zeros(n, dtype=bool)
    blocked[labelled_idx] = True
    out: list[int] = []
    for _ in range(k):
        score = np.where(blocked, -1, degree)
        best = np.flatnonzero(score == score.max())
        j = int(best[np.argmin(rank[best])])
        out.append(j)
        blocked[j] = True
        new = a[j].indices[~covered[a[j].indices]]
        covered[new] = True
        if len(new):  # the graph is symmetric: rows whose balls held the newly covered rows lose them
            degree -= np.asarray(a[new].sum(0)).ravel().astype(np.int64)
    return np.asarray(out, dtype=np.int64)


def _embedded(ctx: SelectionContext) -> tuple[torch.Tensor, np.ndarray]:
    """Candidates' and labelled set's embeddings in one matrix (labelled rows last) and the labelled rows."""
    cand, lab = ctx.embeddings, ctx.labelled_embeddings
    x = torch.cat([cand, lab.to(cand.device)]) if lab.shape[0] else cand
    return x, np.arange(cand.shape[0], x.shape[0])


class TypiClust(Strategy):
    name = "typiclust"
    needs = frozenset({"embeddings", "labelled_embeddings"})

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        x, labelled = _embedded(ctx)
        return ctx.candidates[typiclust_select(x, labelled, k, ctx.rng)]


class ProbCover(Strategy):
    name = "probcover"
    needs = frozenset({"probs", "embeddings", "labelled_embeddings"})  # probs: the number of classes

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        x, labelled = _embedded(ctx)
        delta = ctx.option("probcover_delta")
        if delta is None:  # the paper's rule: purity >= 0.95 w.r.t. k-means with as many clusters as classes
            delta = purity_delta(x, kmeans_labels(x, ctx.probs.shape[1], ctx.rng))
        return ctx.candidates[probcover_select(x, labelled, k, delta)]


STRATEGIES.register("typiclust")(TypiClust())
STRATEGIES.register("probcover")(ProbCover())
