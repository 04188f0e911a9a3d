"""BADGE (Ash et al., ICLR 2020): k-means++ seeding on the last layer's gradient embeddings.

The embeddings (p - onehot(argmax p)) outer h are never formed: `badge_seeding_factored` computes
the same distances from p and h (N x (K + D) memory instead of N x K*D). The draws come from
ctx.rng, the (trial, cycle) "query" stream.
"""

from __future__ import annotations

import numpy as np

from al_core.selection import grad_scale
from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy
from al_core.strategies.functions import badge_seeding_factored


class Badge(Strategy):
    name = "badge"
    needs = frozenset({"probs", "embeddings"})

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        return ctx.candidates[badge_seeding_factored(grad_scale(ctx.probs), ctx.embeddings, k, ctx.rng)]


STRATEGIES.register("badge")(Badge())
