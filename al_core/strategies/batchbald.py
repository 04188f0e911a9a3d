"""BatchBALD (Kirsch, van Amersfoort & Gal, NeurIPS 2019): greedy on the joint mutual information
between the labels of the batch and the weights, from T MC-dropout passes; needs train.dropout > 0.

Step n adds the candidate i maximising I(y_1..y_{n-1}, y_i; w) = H(y_1..y_{n-1}, y_i) - sum_j
E_w H(y_j | w); the second sum is additive, so only H(., y_i) - E_w H(y_i | w) is compared. The joint
entropy is exact (all K**n label configurations) while K**n <= n_samples, else estimated from
n_samples configurations of the batch drawn from the model (as in the paper and baal).
"""

from __future__ import annotations

import numpy as np
import torch

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy
from al_core.strategies.functions import CHUNK_ELEMENTS, bald_scores

N_SAMPLES = 1000  # label configurations: exact joint entropy while K ** n fits, sampled beyond
CANDIDATES = 1000  # the pool is cut to this many candidates, the highest BALD scores, first


def _joint_entropy(prods: torch.Tensor, p: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """H(batch, y_i) per candidate, up to one constant shared by the candidates.

    prods: T x C, the product over the batch of p_t(y_j) for C configurations of its labels;
    p: T x N x K; weights: None when the C configurations are all of them (exact), else the
    1 / P(configuration) importance weights of C sampled ones.
    """
    t, n, k = p.shape
    step = max(1, CHUNK_ELEMENTS // max(prods.shape[1] * k, 1))
    out = []
    for s in range(0, n, step):
        joint = torch.einsum("tc,tnk->nck", prods, p[:, s : s + step]) / t  # P(configuration, y_i)
        ent = torch.special.entr(joint)
        out.append(ent.sum((1, 2)) if weights is None else (ent.sum(2) * weights).mean(1))
    return torch.cat(out) if out else torch.empty(0, dtype=p.dtype, device=p.device)


def _configurations(p: torch.Tensor, chosen: list[int], n_samples: int, rng: np.random.Generator):
    """(prods T x C, weights or None) for the labels of the batch `chosen` (see `_joint_entropy`)."""
    t, _, k = p.shape
    if k ** (len(chosen) + 1) <= n_samples:  # exact: every configuration of the batch's labels
        prods = torch.ones(t, 1, dtype=p.dtype, device=p.device)
        for j in chosen:
            prods = (prods[:, :, None] * p[:, j, None, :]).reshape(t, -1)
        return prods, None
    # Sampled: a pass t uniformly, then every label of the batch from that pass's probabilities.
    ts = rng.integers(0, t, size=n_samples)
    u = rng.random((len(chosen), n_samples))
    prods = torch.ones(t, n_samples, dtype=p.dtype, device=p.device)
    for r, j in enumerate(chosen):
        cdf = np.cumsum(p[:, j].cpu().numpy(), 1)[ts]  # n_samples x K
        y = np.minimum((cdf < u[r, :, None] * cdf[:, -1:]).sum(1), k - 1)
        prods = prods * p[:, j, torch.as_tensor(y, device=p.device)]
    scale = prods.max(0).values.clamp(min=1e-300)  # per configuration: a constant shift of the entropy
    prods = prods / scale
    return prods, 1.0 / prods.mean(0)


def batchbald_select(
    mc_probs, k: int, rng: np.random.Generator, n_samples: int = N_SAMPLES, candidates: int | None = CANDIDATES
) -> np.ndarray:
    """BatchBALD's greedy batch: `k` distinct indices into the N rows of `mc_probs`, in the order chosen.

    Parameters
    ----------
    mc_probs : array_like or torch.Tensor, shape (T, N, K)
        Class probabilities of T stochastic (dropout) passes; a tensor stays on its device.
    k : int
        Batch size, 0 <= k <= N.
    rng : numpy.random.Generator
        Draws the sampled label configurations (unused while the joint entropy is exact).
    n_samples : int
        The joint entropy is exact while K ** (batch size) <= n_samples, else estimated from
        n_samples configurations drawn from the model.
    candidates : int or None
        Before the greedy steps, keep only this many rows, those with the highest BALD scores
        (None: all rows).

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        The first pick is BALD's argmax; ties go to the lowest index.
    """
    p = torch.as_tensor(mc_probs).detach().to(torch.float64)
    if p.ndim != 3:
        raise ValueError(f"mc_probs: expected a T x N x K array, got shape {tuple(p.shape)}")
    n = p.shape[1]
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} candidates")
    if n_samples < 1:
        raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples}")
    keep = np.arange(n)
    if candidates is not None and n > max(candidates, k):
        keep = np.sort(np.argsort(-bald_scores(p), kind="stable")[: max(candidates, k)])
        p = p[:, torch.as_tensor(keep, device=p.device)]
    cond = torch.special.entr(p).sum(2).mean(0)  # E_w H(y_i | w)
    chosen: list[int] = []
    for _ in range(k):
        prods, weights = _configurations(p, chosen, n_samples, rng)
        gain = _joint_entropy(prods, p, weights) - cond
        gain[chosen] = -float("inf")
        chosen.append(int(torch.argmax(gain)))  # the first maximum: ties to the lowest index
    return keep[np.asarray(chosen, dtype=np.int64)]


class BatchBald(Strategy):
    name = "batchbald"
    needs = frozenset({"mc_probs"})
    needs_dropout = True

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        n_samples, cands = ctx.option("batchbald_samples"), ctx.option("batchbald_candidates")
        return ctx.candidates[batchbald_select(ctx.mc_probs, k, ctx.rng, n_samples, cands)]


STRATEGIES.register("batchbald")(BatchBald())
