"""Learning loss (Yoo & Kweon, CVPR 2019): query the samples with the largest predicted loss."""

from __future__ import annotations

import numpy as np

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy


class LearningLoss(Strategy):
    name = "learning_loss"
    needs_lossnet = True

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        pred = ctx.score(ctx.candidates).pred_loss
        if pred is None:
            raise RuntimeError("learning_loss needs the loss-prediction module")
        return pred.double().numpy()


STRATEGIES.register("learning_loss")(LearningLoss())
