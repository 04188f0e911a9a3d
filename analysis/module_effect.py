"""The loss-prediction module's own effect on accuracy: `module_effect.csv`.

At cycle 1 a learning_loss run and the random run of the same trial (same dataset, model,
optimizer and further keys) train on the same initial labelled set from the same initial
weights, with the same data order and augmentation; nothing has been queried yet. The only
difference is that the learning_loss run trains the loss-prediction module beside the model,
whose ranking loss also shapes the backbone. The paired difference acc(learning_loss) -
acc(random) at cycle 1 is therefore the module's own effect (with `al.initial: random`).

Under `ll.train_module: always` both runs train the module and this difference is expected to be
zero: the `train_module` column tells the two cases apart when a report mixes them.
"""

from __future__ import annotations

import pandas as pd

from analysis.metrics import RANDOM, paired_stats

LEARNING_LOSS = "learning_loss"


def module_effect_table(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group (keys without strategy): n_pairs, diff_mean, diff_std, diff_ci95, p_value of the
    cycle-1 paired difference acc(learning_loss) - acc(random), paired by trial. Empty without
    both strategies."""
    pair_on = [k for k in keys if k != "strategy"]
    first = cycles[cycles["cycle"] == 1]
    # The difference is the module's own effect only where the pair trained on the same labelled
    # set with the same hyper-parameters: al.initial: strategy, or tuning that chose differently,
    # would mix in what was queried or how it was trained. Such pairs are left out.
    same = [c for c in ("queried_digest", *sorted(c for c in cycles.columns if str(c).startswith("tuned."))) if c in first]
    cols = [*pair_on, "trial", "n_labeled", "test_accuracy", *same]
    ll = first.loc[first["strategy"] == LEARNING_LOSS, cols]
    rnd = first.loc[first["strategy"] == RANDOM, cols]
    pairs = ll.merge(rnd, on=[*pair_on, "trial", "n_labeled", *same], suffixes=("", "_random"))
    pairs["diff"] = pairs["test_accuracy"] - pairs["test_accuracy_random"]
    return paired_stats(pairs, [*pair_on, "n_labeled"])


def module_effect(tables) -> pd.DataFrame | None:
    """module_effect.csv of a sweep with both learning_loss and random runs; None when there is
    nothing to pair."""
    if not {LEARNING_LOSS, RANDOM} <= set(tables.cycles["strategy"].unique()):
        return None
    return module_effect_table(tables.cycles, tables.keys)
