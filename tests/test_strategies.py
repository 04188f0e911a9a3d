"""Query strategies on hand-made probability tables with known rankings."""

import numpy as np
import pytest
import torch

from al_core.strategies import STRATEGIES, Scores, SelectionContext, top_k, uncertainty_scores

TABLE = np.array(
    [
        [1.0, 0.0, 0.0],  # certain (probabilities of exactly 1 and 0)
        [0.5, 0.5, 0.0],  # a coin flip between two classes
        [1 / 3, 1 / 3, 1 / 3],  # uniform: most uncertain
        [0.7, 0.2, 0.1],
    ]
)


def test_least_confidence():
    s = uncertainty_scores(TABLE, "least_confidence")
    np.testing.assert_allclose(s, [0.0, 0.5, 2 / 3, 0.3])
    assert list(np.argsort(-s, kind="stable")) == [2, 1, 3, 0]


def test_margin():
    s = uncertainty_scores(TABLE, "margin")
    np.testing.assert_allclose(s, [0.0, 1.0, 1.0, 0.5])
    assert list(np.argsort(-s, kind="stable")) == [1, 2, 3, 0]


def test_entropy_is_finite_at_zero_and_one():
    s = uncertainty_scores(TABLE, "entropy")
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, [0.0, np.log(2), np.log(3), -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))])
    assert list(np.argsort(-s, kind="stable")) == [2, 3, 1, 0]  # H(.7,.2,.1) = 0.80 > ln 2


def test_accepts_torch_tensors_and_rejects_unknown_measure():
    np.testing.assert_allclose(
        uncertainty_scores(torch.tensor(TABLE, dtype=torch.float32), "entropy"), uncertainty_scores(TABLE, "entropy"), rtol=1e-6
    )
    with pytest.raises(ValueError, match="least_confidence, margin, entropy"):
        uncertainty_scores(TABLE, "bald")


def test_top_k_breaks_ties_by_pool_index_and_ranks_nan_last():
    cand = np.array([10, 20, 30, 40])
    assert list(top_k(np.array([0.5, 0.9, 0.5, 0.1]), cand, 3)) == [20, 10, 30]
    assert list(top_k(np.array([np.nan, 0.2, 0.3, np.inf]), cand, 4)) == [30, 20, 10, 40]


def ctx(probs=None, pred_loss=None, seed=0):
    cand = np.arange(100, 100 + len(probs if probs is not None else pred_loss))
    p = torch.tensor(probs if probs is not None else np.full((len(cand), 3), 1 / 3))
    score = lambda idx: Scores(p[idx - 100], None if pred_loss is None else torch.tensor(pred_loss)[idx - 100])  # noqa: E731
    return SelectionContext(cand, score, np.random.default_rng(seed))


@pytest.mark.parametrize("name,expected", [("least_confidence", [102, 101]), ("margin", [101, 102]), ("entropy", [102, 103])])
def test_uncertainty_strategies_select(name, expected):
    assert list(STRATEGIES.get(name).select(ctx(TABLE), 2)) == expected


def test_learning_loss_selects_largest_predicted_loss():
    assert list(STRATEGIES.get("learning_loss").select(ctx(pred_loss=[0.1, 3.0, 2.0, -1.0]), 2)) == [101, 102]


def test_random_is_seeded_and_without_replacement():
    a = STRATEGIES.get("random").select(ctx(np.full((50, 3), 1 / 3), seed=3), 20)
    b = STRATEGIES.get("random").select(ctx(np.full((50, 3), 1 / 3), seed=3), 20)
    assert list(a) == list(b) and len(set(a)) == 20 and set(a) <= set(range(100, 150))
