"""coreset, badge, bald: their pure functions on inputs with known answers, the selection inputs,
and each strategy end to end through the run loop, killed and resumed."""

import signal
import subprocess

import numpy as np
import pytest
import torch

from al_core.config import ConfigError, load_sweep
from al_core.io import read_jsonl
from al_core.loop import run
from al_core.results import comparable
from al_core.selection import NEEDS, grad_embeddings
from al_core.strategies import STRATEGIES, badge_seeding, bald_scores, kcenter_greedy
from al_core.strategies.functions import badge_seeding_factored
from tests.test_resume import start, wait_stopped


# ---------------------------------------------------------------------------------------------- k-center
def test_kcenter_farthest_first_from_the_centres():
    cand = np.array([[0.0], [1.0], [5.0], [10.0], [4.0]])
    centres = np.array([[0.0]])
    # 10 is farthest from 0; then 5 (distance 5 to 0 and to 10) beats 4 (distance 4); then 1 vs 4 ...
    assert kcenter_greedy(cand, centres, 3).tolist() == [3, 2, 1]


def test_kcenter_without_centres_starts_farthest_from_the_mean_and_ties_go_low():
    cand = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    # M = 0: the mean is (0, 0.25); 1 and 2 are farthest from it -> 1; then 2 (distance 2 to 1);
    # then 3 (sqrt 2 from both) before 0 (1 from both).
    assert kcenter_greedy(cand, np.zeros((0, 2)), 4).tolist() == [1, 2, 3, 0]
    assert kcenter_greedy(cand, [], 1).tolist() == [1]


def test_kcenter_exact_tie_after_centres_goes_to_the_lowest_index():
    cand = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0]])
    assert kcenter_greedy(cand, torch.zeros(1, 2), 1).tolist() == [0]
    with pytest.raises(ValueError):
        kcenter_greedy(cand, torch.zeros(1, 3), 1)


def test_kcenter_chunked_matches_brute_force(monkeypatch):
    import al_core.strategies.functions as f

    rng = np.random.default_rng(0)
    cand, centres = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    monkeypatch.setattr(f, "CHUNK_ELEMENTS", 300 * 7)  # 7 centres per chunk
    got = kcenter_greedy(cand, centres, 20)
    d = np.linalg.norm(cand[:, None] - centres[None], axis=2).min(1)
    want = []
    for _ in range(20):
        j = int(np.argmax(np.where(np.isin(np.arange(300), want), -1, d)))
        want.append(j)
        d = np.minimum(d, np.linalg.norm(cand - cand[j], axis=1))
    assert got.tolist() == want


# ---------------------------------------------------------------------------------------------- BALD
def test_bald_zero_for_identical_passes():
    p = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    assert np.allclose(bald_scores(np.stack([p] * 5)), 0.0, atol=1e-12)


def test_bald_maximal_for_confident_disagreeing_passes():
    agree = [[0.5, 0.5]] * 2  # uncertain but agreeing: no mutual information
    disagree = [[1.0, 0.0], [0.0, 1.0]]  # each pass certain, the passes disagree: log 2
    mc = np.array([[agree[0], disagree[0]], [agree[1], disagree[1]]])  # T=2 x N=2 x K=2
    s = bald_scores(mc)
    assert s[0] == pytest.approx(0.0, abs=1e-12) and s[1] == pytest.approx(np.log(2))
    mixed = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])
    assert 0 < bald_scores(mixed)[0] < np.log(2)
    with pytest.raises(ValueError):
        bald_scores(np.ones((3, 2)))


# ---------------------------------------------------------------------------------------------- BADGE
def test_badge_first_pick_is_the_largest_norm_and_picks_are_distinct():
    g = np.array([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, 3.0], [0.1, 0.0]])
    for seed in range(20):
        picks = badge_seeding(g, 4, np.random.default_rng(seed))
        assert picks[0] == 1  # the largest norm (rows 1 and 3 tie: the lowest index)
        assert len(set(picks.tolist())) == 4
    # Row 3 duplicates the first pick: zero probability while rows with mass remain.
    picks = badge_seeding(g, 4, np.random.default_rng(0)).tolist()
    assert 3 not in picks
    assert sorted(badge_seeding(g, 5, np.random.default_rng(0)).tolist()) == [0, 1, 2, 3, 4]


def test_badge_draws_proportional_to_squared_distance():
    g = np.array([[10.0, 0.0], [9.0, 0.0], [0.0, 0.0]])  # after row 0: mass 1 (row 1) vs 100 (row 2)
    second = [badge_seeding(g, 2, np.random.default_rng(s))[1] for s in range(400)]
    share = np.mean(np.array(second) == 2)
    assert 0.95 < share <= 1.0


def test_badge_factored_equals_the_formed_gradient_embeddings():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(60, 4), 1)
    emb = torch.randn(60, 6)
    g = grad_embeddings(probs, emb)
    assert g.shape == (60, 24)
    # closed form: the cross-entropy gradient at the predicted label w.r.t. the classifier weights
    w = torch.zeros(4, 6, requires_grad=True)
    i = 7
    logits = w @ emb[i] + torch.log(probs[i])  # softmax(logits) = probs[i] at w = 0
    torch.nn.functional.cross_entropy(logits[None], probs[i].argmax()[None]).backward()
    assert torch.allclose(w.grad.reshape(-1), g[i], atol=1e-6)
    scale = probs - torch.nn.functional.one_hot(probs.argmax(1), 4)
    for seed in range(5):
        a = badge_seeding(g, 10, np.random.default_rng(seed))
        b = badge_seeding_factored(scale, emb, 10, np.random.default_rng(seed))
        assert a.tolist() == b.tolist()


# ---------------------------------------------------------------------------------------------- end to end
FAST = ["al.cycles=3", "train.epochs=2", "grid.optimizer=[sgd]", "grid.trial=[0]"]


def overrides(strategy):
    extra = {
        "bald": ["train.dropout=0.3"],
        "batchbald": ["train.dropout=0.3", "select.batchbald_candidates=150", "select.batchbald_samples=100"],
    }
    return [*FAST, f"grid.strategy=[{strategy}]"] + extra.get(strategy, [])


def test_new_strategies_declare_known_needs():
    for name in ("coreset", "badge", "bald", "batchbald", "typiclust", "probcover"):
        assert STRATEGIES.get(name).needs and set(STRATEGIES.get(name).needs) <= set(NEEDS)


def test_bald_refuses_a_config_without_dropout(smoke_yaml, python):
    with pytest.raises(ConfigError, match="train.dropout"):
        load_sweep(smoke_yaml, [*FAST, "grid.strategy=[bald]"])
    p = subprocess.run(
        [python, "-m", "slurm.sweep", str(smoke_yaml), *FAST, "grid.strategy=[bald]", "--dry-run"], capture_output=True, text=True
    )
    assert p.returncode == 2 and p.stderr.startswith("error: train.dropout") and len(p.stderr.splitlines()) == 1
    with pytest.raises(ConfigError, match="train.dropout"):
        load_sweep(smoke_yaml, [*FAST, "train.dropout=1.0"])


def test_dropout_zero_keeps_the_model_bit_identical():
    from al_core.models import MODELS

    torch.manual_seed(0)
    a = MODELS.get("resnet18")(num_classes=3, width=4)
    torch.manual_seed(0)
    b = MODELS.get("resnet18")(num_classes=3, width=4, dropout=0.5)
    assert a.state_dict().keys() == b.state_dict().keys()
    x = torch.randn(4, 3, 32, 32)
    a.eval(), b.eval()
    assert torch.equal(a(x)[0], b(x)[0])  # eval: dropout off
    assert len(a(x)[1]) == 4


@pytest.mark.parametrize("strategy", ["coreset", "badge", "bald", "batchbald", "typiclust", "probcover", "margin+power"])
def test_strategy_end_to_end_killed_and_resumed(smoke_yaml, tmp_path, strategy, monkeypatch):
    run_id = f"resnet18-sgd-{strategy}-t0"
    sweep = load_sweep(smoke_yaml, overrides(strategy))
    default = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses' thread count (AL_THREADS=1): bit-identical CPU results
    try:
        run(sweep.run(run_id), sweep.run_dir(run_id), log=lambda s: None)
    finally:
        torch.set_num_threads(default)
    reference = [comparable(r) for r in read_jsonl(sweep.run_dir(run_id) / "cycles.jsonl")]
    assert len(reference) == 3
    assert [r.get("stochastic") for r in reference] == [{"mode": "power", "beta": 1.0} if "+" in strategy else None] * 3
    for prev, row in zip(reference, reference[1:]):
        assert len(row["queried"]) == 100 and not set(row["queried"]) & set(prev["queried"])
    all_queried = [i for r in reference for i in r["queried"]]
    assert len(set(all_queried)) == 300

    out = tmp_path / "killed"
    run_dir = out / "smoke" / "runs" / run_id
    import tests.test_resume as tr

    monkeypatch.setattr(tr, "RUN_ID", run_id)  # start() runs tr.RUN_ID
    kills = []
    for pause in ("checkpoint:2", "rows:1"):  # each process is killed at its n-th such write
        p = start(smoke_yaml, out, pause, overrides(strategy))
        if wait_stopped(p, timeout=300):
            p.kill()
            kills.append(pause)
        assert p.wait() in (-signal.SIGKILL, 0), p.returncode
    # Every pause point is reached well before the run's end (9 checkpoints and 3 rows in all),
    # so each process must have been stopped there and killed, not have run to completion.
    assert kills == ["checkpoint:2", "rows:1"], kills
    assert not (run_dir / "DONE").exists() and len(read_jsonl(run_dir / "cycles.jsonl")) < 3
    p = start(smoke_yaml, out, overrides=overrides(strategy))
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 0, text
    assert [comparable(r) for r in read_jsonl(run_dir / "cycles.jsonl")] == reference
    assert all(r["select_time_s"] >= 0 for r in read_jsonl(run_dir / "cycles.jsonl"))


def test_selection_inputs_are_lazy_declared_and_consistent():
    from al_core.data import load
    from al_core.models import MODELS
    from al_core.selection import SelectionInputs
    from al_core.strategies import SelectionContext
    import contextlib

    data = load("synthetic", "data", torch.device("cpu"))
    torch.manual_seed(0)
    model = MODELS.get("resnet18")(num_classes=data.n_classes, in_channels=data.spec.channels, width=4, dropout=0.5)
    cand, lab = np.arange(0, 40), np.arange(40, 50)
    inputs = SelectionInputs(
        model,
        data,
        cand,
        lab,
        {"probs", "grad_embeddings", "labelled_embeddings", "mc_probs"},
        16,
        contextlib.nullcontext(),
        trial=0,
        cycle=2,
        mc_passes=3,
    )
    ctx = SelectionContext(cand, None, np.random.default_rng(0), labelled=lab, inputs=inputs)
    assert inputs._cache == {}  # nothing computed before it is read
    with pytest.raises(RuntimeError, match="does not list it in its `needs`"):
        ctx.embeddings
    g, p = ctx.grad_embeddings, ctx.probs
    emb = inputs._cache["embeddings"]
    assert emb.shape == (40, 32) and g.shape == (40, data.n_classes * 32) and ctx.labelled_embeddings.shape == (10, 32)
    assert torch.allclose(g, grad_embeddings(p, emb))
    model.eval()
    with torch.no_grad():
        logits, feats = model(data.normalise(data.pool_x[torch.as_tensor(cand)]))
    assert torch.allclose(p, torch.softmax(logits, 1), atol=1e-6) and len(feats) == 4
    mc = ctx.mc_probs
    assert mc.shape == (3, 40, data.n_classes) and not torch.equal(mc[0], mc[1])  # dropout on: passes differ
    again = SelectionInputs(model, data, cand, lab, {"mc_probs"}, 16, contextlib.nullcontext(), 0, 2, 3).get("mc_probs")
    assert torch.equal(mc, again)  # masks from (trial, cycle): the same on a resumed run
    assert not model.training
    model.dropout_only_before_classifier = False  # the generic path: T full forward passes
    full = [
        SelectionInputs(model, data, cand, lab, {"mc_probs"}, 16, contextlib.nullcontext(), 0, 2, 3).get("mc_probs")
        for _ in range(2)
    ]
    assert full[0].shape == mc.shape and torch.equal(full[0], full[1]) and not torch.equal(full[0][0], full[0][1])
    assert torch.allclose(full[0].sum(2), torch.ones(3, 40), atol=1e-5)
