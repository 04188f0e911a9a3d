"""The pure computations behind coreset, badge and bald (README, Add your own strategy).

numpy arrays or torch tensors in, numpy out. Tensors stay on their device (the run loop passes
them on the training device); nothing here ever builds an N x N (or N x M) matrix larger than one
chunk.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ELEMENTS = 1 << 24  # at most this many distances at once (64 MiB of float32)


def _tensor(x, name: str, dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {tuple(t.shape)}")
    return t.to(dtype)


def centred(x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`x` and `others` in float64, less the mean row of them all: distances are unchanged, but
    ||a||^2 - 2 a.b + ||b||^2 no longer loses the digits that separate near neighbours when the
    points sit far from the origin, so picks depend on the geometry alone (translation included)."""
    rows = [x.to(torch.float64), *(o.to(torch.float64).to(x.device) for o in others)]
    n = sum(r.shape[0] for r in rows)
    mean = sum(r.sum(0) for r in rows) / max(n, 1)
    return tuple(r - mean for r in rows)


def canonical_order(sq_norm: torch.Tensor) -> torch.Tensor:
    """Rows in the order of their squared norm (ties: the lower index): the order random draws walk,
    so that a permutation of the rows, or a rotation, draws the same points."""
    return torch.argsort(sq_norm, stable=True)


def _sq_dist_to(x: torch.Tensor, xx: torch.Tensor, j: int) -> torch.Tensor:
    """Squared Euclidean distance of every row of `x` to row j, as ||a||^2 - 2 a.b + ||b||^2 (`xx`: the
    rows' squared norms): one matrix-vector product, 8x faster on a CPU than forming x - x[j]."""
    return (xx - 2.0 * (x @ x[j]) + xx[j]).clamp_(min=0)


def _min_sq_dist(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Per row of `x`, the squared distance to its nearest centre, over chunks of centres."""
    best = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    if centres.shape[0] == 0:
        return best
    xx = x.pow(2).sum(1, keepdim=True)
    step = max(1, CHUNK_ELEMENTS // max(x.shape[0], 1))
    for s in range(0, centres.shape[0], step):
        c = centres[s : s + step]
        d = (xx + c.pow(2).sum(1)[None, :] - 2.0 * (x @ c.T)).clamp_(min=0)
        best = torch.minimum(best, d.min(1).values)
    return best


def kcenter_greedy(candidates, centres, k: int) -> np.ndarray:
    """k-center greedy (Sener & Savarese, ICLR 2018): `k` indices into `candidates`, in the order chosen.

    Each choice is the candidate farthest (Euclidean) from its nearest centre or earlier choice;
    ties go to the lowest index; with no centres the first choice is the candidate farthest from
    the candidates' mean. Distances in float64 about the points' mean (`centred`).
    """
    x = _tensor(candidates, "candidates")
    c = _tensor(centres, "centres") if np.size(centres) or torch.is_tensor(centres) else x[:0]
    if c.ndim == 2 and c.shape[0] and c.shape[1] != x.shape[1]:
        raise ValueError(f"centres: expected {x.shape[1]} columns like candidates, got {c.shape[1]}")
    n = x.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} candidates")
    x, c = centred(x, c)
    xx = x.pow(2).sum(1)
    dist = _min_sq_dist(x, c) if c.shape[0] else xx.clone()  # no centres: start from the mean's farthest
    out = []
    for _ in range(k):
        # torch.argmax returns the first maximal index: ties go to the lowest index.
        j = int(torch.argmax(dist))
        out.append(j)
        dist = torch.minimum(dist, _sq_dist_to(x, xx, j))
        dist[j] = -1.0  # never again, even where duplicates leave every distance at 0
    return np.asarray(out, dtype=np.int64)


def bald_scores(mc_probs) -> np.ndarray:
    """BALD (Houlsby et al. 2011): mutual information H(mean_t p) - mean_t H(p) in nats, per row.

    `mc_probs` is T x N x K, class probabilities of T stochastic (dropout) passes.
    """
    p = torch.as_tensor(mc_probs).detach().to(torch.float64)
    if p.ndim != 3:
        raise ValueError(f"mc_probs: expected a T x N x K array, got shape {tuple(p.shape)}")
    total = torch.special.entr(p.mean(0)).sum(1)
    expected = torch.special.entr(p).sum(2).mean(0)
    return (total - expected).clamp(min=0).cpu().numpy()


def badge_seeding(grad_embeddings, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Ash et al., ICLR 2020): `k` distinct row indices, in the order chosen.

    The first choice is the row of largest norm (the lowest index among equals); every later one
    is drawn from `rng` with probability proportional to the squared distance to the nearest
    chosen row. Should every remaining row coincide with a chosen one, the lowest unchosen index
    is taken, so the picks are always distinct.
    """
    g = _tensor(grad_embeddings, "grad_embeddings", torch.float64)
    sq = g.pow(2).sum(1)
    return _kmeanspp(sq, lambda j: _sq_dist_to(g, sq, j), g.shape[0], k, rng)


def badge_seeding_factored(scale, emb, k: int, rng: np.random.Generator) -> np.ndarray:
    """`badge_seeding` on the gradient embeddings scale[i] (outer) emb[i] (N x K and N x D), never formed.

    ||a_i (x) h_i - a_j (x) h_j||^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j),
    so a pick costs O(N (K + D)) instead of O(N K D) and memory stays N x (K + D).
    """
    # The N x D products in float32 (half the memory traffic of a pick), combined in float64.
    a, h = _tensor(scale, "scale", torch.float64), _tensor(emb, "emb", torch.float32)
    h = h.to(a.device)
    na, nh = a.pow(2).sum(1), h.pow(2).sum(1).double()
    sq = na * nh

    def dist(j: int) -> torch.Tensor:
        return (sq + sq[j] - 2.0 * (a @ a[j]) * (h @ h[j]).double()).clamp(min=0)

    return _kmeanspp(sq, dist, a.shape[0], k, rng)


def _kmeanspp(sq_norm: torch.Tensor, dist_to, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} rows")
    out: list[int] = []
    if k == 0:
        return np.empty(0, dtype=np.int64)
    order = canonical_order(sq_norm)  # the draws walk the rows in this order, not the index order
    j = int(torch.argmax(sq_norm))
    chosen = torch.zeros(n, dtype=torch.bool, device=sq_norm.device)
    dist = torch.full((n,), float("inf"), dtype=torch.float64, device=sq_norm.device)
    for _ in range(k):
        out.append(j)
        chosen[j] = True
        dist = torch.minimum(dist, dist_to(j).to(torch.float64))
        dist[chosen] = 0.0
        if len(out) == k:
            break
        d, free = dist[order], ~chosen[order]
        cum = torch.cumsum(d, 0)
        total = float(cum[-1])
        if total > 0 and np.isfinite(total):
            u = rng.random() * total
            i = int(torch.searchsorted(cum, torch.tensor([u], dtype=torch.float64, device=cum.device), right=True)[0])
            i = min(i, n - 1)
            if not free[i]:  # u landed on a boundary of zero-mass rows: step to the next row with mass
                i = int(torch.nonzero(free & (d > 0))[0]) if bool((free & (d > 0)).any()) else i
            j = int(order[i])
        if total <= 0 or not np.isfinite(total) or chosen[j]:
            j = int(order[torch.nonzero(free)[0]])
    return np.asarray(out, dtype=np.int64)
