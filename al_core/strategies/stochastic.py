"""Stochastic batch acquisition (Kirsch et al., TMLR 2023): draw the batch instead of taking the top k.

A modifier of every scored strategy (`Strategy.select` calls it when `ctx.stochastic` is set):
the k picks are drawn without replacement with probabilities proportional to a weight of the
score, by the Gumbel-top-k trick (adding independent Gumbel noise to the log-weights and taking
the k largest draws exactly from the Plackett-Luce law of sequential sampling without replacement).
"""

from __future__ import annotations

import logging

import numpy as np

MODES = ("power", "softmax", "softrank")


def log_weights(scores, mode: str = "power", beta: float = 1.0) -> np.ndarray:
    """The log of each score's sampling weight: beta log s (power), beta s (softmax), -beta log rank (softrank).

    Non-finite scores get weight 0 (log-weight -inf), with one warning line, as `top_k` ranks them last.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores: expected a 1-D array, got shape {s.shape}")
    if mode not in MODES:
        raise ValueError(f"unknown stochastic mode {mode!r}; expected one of {', '.join(MODES)}")
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
    bad = ~np.isfinite(s)
    if bad.any():
        logging.getLogger(__name__).warning("warning: %d non-finite scores given sampling weight 0", int(bad.sum()))
    s = np.where(bad, 0.0, s)
    if mode == "power":
        if (s < 0).any():
            raise ValueError("stochastic mode power: expected scores >= 0; use softmax or softrank for signed scores")
        with np.errstate(divide="ignore"):
            logw = beta * np.log(s) if beta > 0 else np.zeros_like(s)
    elif mode == "softmax":
        logw = beta * s
    else:
        rank = np.empty(len(s))
        rank[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)  # 1 = highest; equal scores: lower index first
        logw = -beta * np.log(rank)
    return np.where(bad, -np.inf, logw)


def stochastic_batch(scores, k: int, rng: np.random.Generator, mode: str = "power", beta: float = 1.0) -> np.ndarray:
    """Draw `k` distinct indices into `scores` without replacement, in the order drawn.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Acquisition scores, higher = more wanted (>= 0 for ``power``).
    k : int
        Batch size, 0 <= k <= N.
    rng : numpy.random.Generator
        The source of the Gumbel noise (one draw per score).
    mode : {"power", "softmax", "softrank"}
        Weights ``score ** beta``, ``exp(beta * score)`` or ``rank ** -beta`` (rank 1 = highest score).
    beta : float
        Inverse temperature, >= 0; 0 is uniform sampling, large beta approaches top-k.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        Kirsch et al. (TMLR 2023), by Gumbel-top-k: the k largest of ``log w_i + G_i``, G_i
        i.i.d. Gumbel(0, 1), are a sequential draw without replacement with probabilities
        proportional to w. Zero-weight indices come last, in the order of their noise.
    """
    logw = log_weights(scores, mode, beta)
    if not 0 <= k <= len(logw):
        raise ValueError(f"cannot draw {k} of {len(logw)} scores")
    g = rng.gumbel(size=len(logw))
    key = logw + g
    order = np.lexsort((-g, -key))  # by perturbed log-weight, then (weight 0) by the noise alone
    return order[:k].astype(np.int64)
