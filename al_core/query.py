"""Choosing what to label: the initial set of cycle 1 and each later cycle's query.

The unlabelled candidates (a seeded random subset of them with al.subset), the scores of the
last cycle's model, the selection inputs the strategy declared and its random streams, all from
(trial, cycle), so a resumed or replayed cycle chooses the same samples.
"""

from __future__ import annotations

import numpy as np

from al_core import seeding
from al_core.config import RunConfig
from al_core.selection import MC_PASSES, SelectionInputs
from al_core.strategies import SelectionContext
from al_core.train import score_pool
from al_core.trainer import Trainer


def initial_set(cfg: RunConfig, strategy, trainer: Trainer) -> list[int]:
    """Cycle 1's labelled set: random (shared by every run of the trial, whatever its model,
    optimizer or strategy), or with al.initial: strategy, the strategy's choice by the untrained model."""
    al, trial = cfg.al, cfg.trial
    if al.initial == "random" or cfg.strategy == "random":
        rng = seeding.rng(trial, 0, 0, "initial")
        return sorted(int(i) for i in rng.choice(trainer.data.n_pool, size=al.initial_size, replace=False))
    model, lossnet = trainer.fresh_model(1)  # the untrained model of cycle 1
    return query(cfg, strategy, trainer, 1, model, lossnet, np.empty(0, dtype=np.int64), al.initial_size)


def query(cfg: RunConfig, strategy, trainer: Trainer, c: int, model, lossnet, labelled: np.ndarray, n_query: int) -> list[int]:
    """The `n_query` pool indices `strategy` chooses at cycle `c`, by `model` trained on `labelled`."""
    al, trial, data = cfg.al, cfg.trial, trainer.data
    unlabelled = np.setdiff1d(np.arange(data.n_pool), labelled, assume_unique=True)
    if al.subset is not None and al.subset < len(unlabelled):
        sub = seeding.rng(trial, c, 0, "subset").choice(unlabelled, size=al.subset, replace=False)
        unlabelled = np.sort(sub)
    bs, amp = trainer.eval_batch_size, trainer.score_amp
    check = lambda: trainer.check_stop(f"cycle {c} selection")  # noqa: E731
    ctx = SelectionContext(
        candidates=unlabelled,
        score=lambda idx: score_pool(model, lossnet, data, idx, bs, amp, check),
        rng=seeding.rng(trial, c, 0, "query"),
        ties=seeding.rng(trial, c, 0, "ties"),
        labelled=labelled,
        stochastic=cfg.stochastic,
        options=cfg.select,
    )
    if strategy.needs:  # embeddings, gradient embeddings, MC-dropout probabilities: on demand
        passes = getattr(strategy, "mc_passes", MC_PASSES)
        ctx.inputs = SelectionInputs(
            model, data, unlabelled, labelled, strategy.needs, bs, amp, trial, c, passes, check, cfg.strategy
        )
    return [int(i) for i in strategy.select(ctx, n_query)]
