"""Every registered strategy and model through the same checks (as scikit-activeml's pool tests
run every query strategy): a strategy added by a later change, or by a plugin registered before
collection, is checked without a line of its own here."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from al_core import seeding
from al_core.data import load
from al_core.models import MODELS, LossNet
from al_core.registry import dropout_kwargs
from al_core.selection import NEEDS, SelectionInputs
from al_core.strategies import STRATEGIES, SelectionContext, Strategy
from al_core.train import score_pool


@pytest.fixture(scope="module")
def pool():
    """Synthetic data, a small untrained ResNet with dropout and a loss-prediction module."""
    data = load("synthetic", "data", torch.device("cpu"))
    torch.manual_seed(0)
    model = MODELS.get("resnet18")(num_classes=data.n_classes, in_channels=data.spec.channels, width=4, dropout=0.5)
    lossnet = LossNet(model.stage_channels, 16)
    return data, model.eval(), lossnet.eval()


def context(strategy: Strategy, pool, candidates: np.ndarray, labelled: np.ndarray, cycle: int = 2):
    """The selection context the run loop builds (al_core.loop), inputs limited to the strategy's `needs`."""
    data, model, lossnet = pool
    ctx = SelectionContext(
        candidates=candidates,
        score=lambda idx: score_pool(model, lossnet, data, idx, 64, contextlib.nullcontext()),
        rng=seeding.rng(0, cycle, 0, "query"),
        ties=seeding.rng(0, cycle, 0, "ties"),
        labelled=labelled,
    )
    if strategy.needs:
        ctx.inputs = SelectionInputs(
            model, data, candidates, labelled, strategy.needs, 64, contextlib.nullcontext(), 0, cycle, 3, None, strategy.name
        )
    return ctx


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_picks_k_distinct_candidates_reproducibly(name, pool):
    strategy = STRATEGIES.get(name)
    assert isinstance(strategy, Strategy) and set(strategy.needs) <= set(NEEDS), strategy.needs
    rng = np.random.default_rng(5)
    labelled = np.sort(rng.choice(400, size=30, replace=False))
    candidates = np.setdiff1d(np.arange(400), labelled)[::3]  # ascending, a subset of the unlabelled pool
    ctx = context(strategy, pool, candidates, labelled)
    chosen = np.asarray(strategy.select(ctx, 12))
    assert chosen.shape == (12,) and len(set(chosen.tolist())) == 12, chosen
    assert set(chosen.tolist()) <= set(candidates.tolist())  # never a labelled or unknown index
    again = np.asarray(strategy.select(context(strategy, pool, candidates, labelled), 12))
    assert np.array_equal(chosen, again)  # the same streams give the same answer
    if ctx.inputs is not None:  # it read only what it declared (reading more raises), and all of it
        assert set(strategy.needs) <= set(ctx.inputs._cache), (strategy.needs, sorted(ctx.inputs._cache))
    if type(strategy).scores is not Strategy.scores:  # a scored strategy: finite scores, one per candidate
        scores = np.asarray(strategy.scores(context(strategy, pool, candidates, labelled)), dtype=float)
        assert scores.shape == candidates.shape and np.isfinite(scores).all()


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_can_take_the_whole_candidate_set(name, pool):
    strategy = STRATEGIES.get(name)
    labelled = np.arange(0, 40)
    candidates = np.arange(40, 56)
    chosen = np.asarray(strategy.select(context(strategy, pool, candidates, labelled), len(candidates)))
    assert sorted(chosen.tolist()) == candidates.tolist()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_returns_logits_and_four_stages_without_nan(name):
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=7, in_channels=1, width=4, **dropout_kwargs(name, 0.0))
    logits, feats = model(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert len(feats) == 4 and all(torch.isfinite(f).all() for f in feats)
    assert [f.shape[1] for f in feats] == list(model.stage_channels)
