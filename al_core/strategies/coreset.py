"""Core-set (Sener & Savarese, ICLR 2018): k-center greedy over penultimate-layer embeddings,
with the labelled set as the initial centres."""

from __future__ import annotations

import numpy as np

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy
from al_core.strategies.functions import kcenter_greedy


class CoreSet(Strategy):
    name = "coreset"
    needs = frozenset({"embeddings", "labelled_embeddings"})

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        return ctx.candidates[kcenter_greedy(ctx.embeddings, ctx.labelled_embeddings, k)]


STRATEGIES.register("coreset")(CoreSet())
