"""Random sampling: the baseline every strategy is compared with."""

from __future__ import annotations

import numpy as np

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy


class RandomSampling(Strategy):
    name = "random"

    def select(self, ctx: SelectionContext, k: int) -> np.ndarray:
        return np.sort(ctx.rng.choice(ctx.candidates, size=k, replace=False))


STRATEGIES.register("random")(RandomSampling())
