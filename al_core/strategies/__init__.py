"""Query strategies by name: random, least_confidence, margin, entropy, learning_loss.

One module each behind `Strategy.select(ctx, k)`; the uncertainty family shares `uncertainty_scores`.
"""
from al_core.strategies.base import STRATEGIES, Scores, SelectionContext, Strategy, top_k
from al_core.strategies import random as _random  # noqa: F401  (registers)
from al_core.strategies.uncertainty import MEASURES, uncertainty_scores
from al_core.strategies import learning_loss as _learning_loss  # noqa: F401  (registers)

__all__ = ["STRATEGIES", "Scores", "SelectionContext", "Strategy", "top_k", "uncertainty_scores", "MEASURES"]
