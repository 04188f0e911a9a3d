"""The query-strategy interface: `select(ctx, k) -> pool indices`, with ranking owned here.

A strategy only computes scores (higher = queried first); ranking, tie-breaking and the guard
against non-finite scores live in `top_k`, so every strategy ranks the same way. Ties are broken
by a seeded random order of the pool (`ctx.ties`), never by pool index: predicted losses and
low-precision probabilities tie often, and "lowest index first" would bias every query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from al_core.registry import STRATEGIES  # noqa: F401  (re-exported: strategies register here)
from al_core.strategies.stochastic import stochastic_batch


@dataclass
class Scores:
    """What one no-grad pass over candidates gives: class probabilities and predicted losses."""

    probs: torch.Tensor  # N x K float32 on the CPU
    pred_loss: Optional[torch.Tensor]  # N, or None without a loss-prediction module


@dataclass
class SelectionContext:
    candidates: np.ndarray  # pool indices that may be queried (unlabelled, maybe a random subset), ascending
    score: Callable[[np.ndarray], Scores]  # runs the current model over pool indices
    rng: np.random.Generator  # this trial and cycle's "query" stream
    ties: Optional[np.random.Generator] = None  # this trial and cycle's "ties" stream (None: lowest index first)
    labelled: Optional[np.ndarray] = None  # pool indices of the labelled set, ascending
    inputs: Optional[object] = None  # al_core.selection.SelectionInputs: what the strategy's `needs` names
    stochastic: Optional[tuple] = None  # (mode, beta): draw a scored strategy's batch (stochastic_batch), None: top k
    options: Optional[object] = None  # al_core.config.SelectConfig: the sweep's `select` settings (None: defaults)

    def option(self, name: str):
        """The sweep's `select.<name>` setting, or its default when the context carries none."""
        if self.options is None:
            from al_core.config import SelectConfig

            return getattr(SelectConfig(), name)
        return getattr(self.options, name)

    def need(self, name: str) -> torch.Tensor:
        """A lazily computed selection input the strategy declared in `needs` (see al_core.selection)."""
        if self.inputs is None:
            raise RuntimeError(f"selection input {name!r} is not available in this context")
        return self.inputs.get(name)

    probs = property(lambda self: self.need("probs"), doc="N x K class probabilities of the candidates (device)")
    embeddings = property(lambda self: self.need("embeddings"), doc="N x D penultimate-layer features of the candidates")
    labelled_embeddings = property(lambda self: self.need("labelled_embeddings"), doc="M x D the same for the labelled set")
    grad_embeddings = property(lambda self: self.need("grad_embeddings"), doc="N x (K*D) BADGE gradient embeddings")
    mc_probs = property(lambda self: self.need("mc_probs"), doc="T x N x K probabilities of T dropout passes")


class Strategy:
    """Base class: subclasses set `name` and implement `scores(ctx)` (or override `select`)."""

    name = ""
    needs_lossnet = False  # train the loss-prediction module beside the model
    needs: frozenset = frozenset()  # selection inputs read from ctx (al_core.selection.NEEDS)
    needs_dropout = False  # refuse a config with train.dropout == 0 (MC-dropout strategies)

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        raise NotImplementedError

    @property
    def scored(self) -> bool:
        """Whether the strategy ranks scores (it implements `scores` and keeps this `select`): only
        such a strategy can draw its batch stochastically (`select.stochastic`)."""
        cls = type(self)
        return cls.scores is not Strategy.scores and cls.select is Strategy.select

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        scores = self.scores(ctx)
        if ctx.stochastic is not None:  # Kirsch et al. (TMLR 2023): draw the batch with weights of the scores
            mode, beta = ctx.stochastic
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != ctx.candidates.shape:
                raise ValueError(f"{scores.shape[0]} scores for {ctx.candidates.shape[0]} candidates")
            if mode == "power" and (scores < 0).any():  # predicted losses may be negative: weight 0, not a crash
                logging.getLogger(__name__).warning("warning: %d negative scores given weight 0", int((scores < 0).sum()))
                scores = np.maximum(scores, 0.0)
            return ctx.candidates[stochastic_batch(scores, k, ctx.rng, mode, beta)]
        return top_k(scores, ctx.candidates, k, ctx.ties)


def top_k(scores: np.ndarray, candidates: np.ndarray, k: int, ties: np.random.Generator | None = None) -> np.ndarray:
    """The `k` candidates with the highest scores.

    Ties go to a random order of the pool drawn from `ties` (one key per pool index, so the
    result does not depend on the order the candidates come in), or without `ties` to the lower
    pool index. Non-finite scores (a diverged model) are ranked last, with one warning line.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != candidates.shape:
        raise ValueError(f"{scores.shape[0]} scores for {candidates.shape[0]} candidates")
    if k > len(candidates):
        raise ValueError(f"cannot query {k} from {len(candidates)} candidates")
    bad = ~np.isfinite(scores)
    if bad.any():
        logging.getLogger(__name__).warning("warning: %d non-finite uncertainty scores ranked last", int(bad.sum()))
        scores = np.where(bad, -np.inf, scores)
    if ties is None or len(candidates) == 0:
        order = np.argsort(-scores, kind="stable")
    else:
        keys = ties.random(int(candidates.max()) + 1)[candidates]  # a key per pool index
        order = np.lexsort((candidates, keys, -scores))  # by score, then the seeded key, then index
    return candidates[order[:k]]
