"""BALD (Houlsby et al. 2011; Gal et al., ICML 2017): the mutual information between the label and
the weights, estimated from T forward passes with dropout on; needs train.dropout > 0."""

from __future__ import annotations

import numpy as np

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy
from al_core.strategies.functions import bald_scores


class Bald(Strategy):
    name = "bald"
    needs = frozenset({"mc_probs"})
    needs_dropout = True

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        return bald_scores(ctx.mc_probs)


STRATEGIES.register("bald")(Bald())
