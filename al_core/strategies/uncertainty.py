"""Classic uncertainty sampling on the model's class probabilities: least confidence, margin, entropy."""

from __future__ import annotations

import numpy as np
import torch

from al_core.strategies.base import STRATEGIES, SelectionContext, Strategy

MEASURES = ("least_confidence", "margin", "entropy")


def uncertainty_scores(probs, measure: str) -> np.ndarray:
    """One score per row of `probs` (N x K class probabilities); higher = more uncertain.

    least_confidence: 1 - max p.  margin: 1 - (p_top1 - p_top2).  entropy: -sum p log p, with
    0 log 0 = 0 (torch.special.entr, never log(p), which gives NaN at p = 0).
    """
    p = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if p.ndim != 2:
        raise ValueError(f"probs: expected an N x K array, got shape {tuple(p.shape)}")
    if measure == "least_confidence":
        s = 1.0 - p.max(dim=1).values
    elif measure == "margin":
        if p.shape[1] < 2:
            raise ValueError("margin needs at least two classes")
        top2 = p.topk(2, dim=1).values
        s = 1.0 - (top2[:, 0] - top2[:, 1])
    elif measure == "entropy":
        s = torch.special.entr(p).sum(dim=1)
    else:
        raise ValueError(f"unknown uncertainty measure {measure!r}; expected one of {', '.join(MEASURES)}")
    return s.numpy()


class Uncertainty(Strategy):
    def __init__(self, measure: str) -> None:
        self.name = measure

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        return uncertainty_scores(ctx.score(ctx.candidates).probs, self.name)


for _m in MEASURES:
    STRATEGIES.register(_m)(Uncertainty(_m))
