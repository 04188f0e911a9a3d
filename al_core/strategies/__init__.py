"""Query strategies by name: random, least_confidence, margin, entropy, learning_loss, coreset, badge, bald,
batchbald, typiclust, probcover; any scored one may draw its batch stochastically (`stochastic_batch`).

One module each behind `Strategy.select(ctx, k)`; the uncertainty family shares `uncertainty_scores`.
"""

from al_core.strategies.base import STRATEGIES, Scores, SelectionContext, Strategy, top_k
from al_core.strategies import random as _random  # noqa: F401  (registers)
from al_core.strategies.uncertainty import MEASURES, uncertainty_scores
from al_core.strategies import learning_loss as _learning_loss  # noqa: F401  (registers)
from al_core.strategies.functions import badge_seeding, bald_scores, kcenter_greedy
from al_core.strategies import coreset as _coreset, badge as _badge, bald as _bald  # noqa: F401,E402  (register)
from al_core.strategies.stochastic import stochastic_batch
from al_core.strategies.batchbald import batchbald_select
from al_core.strategies.typical import probcover_select, typiclust_select

__all__ = [
    "STRATEGIES",
    "Scores",
    "SelectionContext",
    "Strategy",
    "top_k",
    "uncertainty_scores",
    "MEASURES",
    "kcenter_greedy",
    "badge_seeding",
    "bald_scores",
    "stochastic_batch",
    "batchbald_select",
    "typiclust_select",
    "probcover_select",
]
