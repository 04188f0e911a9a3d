"""The primary questions' verdicts (analysis.decide): group-sequential boundaries against published
values, verdicts on constructed tables, estimates against statsmodels' mixed model."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from al_core.config import ConfigError, load_sweep
from analysis.decide import boundaries, complete_trials, decide, judge, look_alpha, obf_spent, question_contrasts


def test_obrien_fleming_boundaries_equal_the_published_ones():
    """Lan-DeMets O'Brien-Fleming spending, two-sided 5% (2.5% a side): Jennison & Turnbull (2000)
    and R gsDesign (sfLDOF, test.type 2) give these z boundaries."""
    assert boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05) == pytest.approx((4.8769, 3.3569, 2.6803, 2.2898, 2.0310), abs=2e-4)
    assert boundaries((1 / 3, 2 / 3, 1.0), 0.05) == pytest.approx((3.7103, 2.5114, 1.9930), abs=2e-4)
    assert boundaries((0.5, 1.0), 0.05) == pytest.approx((2.9626, 1.9686), abs=2e-4)
    assert obf_spent(1.0, 0.05) == pytest.approx(0.05) and look_alpha([1.0], 0.01) == 0.01


def test_the_boundaries_spend_exactly_alpha_on_a_brownian_motion():
    """Simulated: P(|Z_k| > c_k at some look) = alpha, for unequal looks too."""
    rng = np.random.default_rng(0)
    t = np.array([5, 10, 15, 22, 30]) / 30
    c = np.array(boundaries(tuple(t), 0.05))
    steps = rng.normal(size=(400_000, len(t))) * np.sqrt(np.diff(np.r_[0, t]))
    z = np.cumsum(steps, 1) / np.sqrt(t)
    rate = (np.abs(z) > c).any(1).mean()
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / len(z))


def runs_table(effect: dict, n_trials: int, sd: float = 0.3, seed: int = 0, models=("m1", "m2"), optimizers=("adam", "sgd")):
    """AUBC (fraction) of a full grid: 0.7 + effect per (model, optimizer) in points/100 + trial and
    whole-plot (model within trial) effects + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_trials):
        block = rng.normal(0, 2.0)
        for m in models:
            plot = rng.normal(0, 1.0)
            for o, s in itertools.product(optimizers, ("entropy", "random")):
                y = 70 + block + plot + effect.get((m, o), 0.0) + rng.normal(0, sd)
                rows.append(dict(model=m, optimizer=o, strategy=s, trial=t, done=True, aubc=y / 100, dataset="d"))
    return pd.DataFrame(rows)


def test_verdicts_on_constructed_tables():
    clear = runs_table({("m1", "adam"): 3.0, ("m2", "adam"): 3.0}, n_trials=8)
    v = {x.question: x for x in decide(clear, ["optimizer", "model", "model:optimizer"], 1.0, [1.0])}
    assert v["optimizer"].verdict == "difference" and "adam - sgd > 0" in v["optimizer"].pairs
    assert v["model:optimizer"].verdict == "equivalent"  # the effect is the same on both models
    assert v["model"].verdict == "undecided"  # the whole-plot noise (SD 1 point) is too large for 8 trials
    same = runs_table({}, n_trials=8, sd=0.1)
    assert judge("optimizer", complete_trials(same), 1, [1.0], 1.0).verdict == "equivalent"
    noisy = runs_table({("m1", "adam"): 1.0}, n_trials=3, sd=3.0)
    assert judge("optimizer", complete_trials(noisy), 1, [1.0], 1.0).verdict == "undecided"


def test_a_trial_missing_a_cell_is_left_out_and_an_early_look_is_wider():
    r = runs_table({("m1", "adam"): 3.0, ("m2", "adam"): 3.0}, n_trials=6)
    r.loc[(r["trial"] == 2) & (r["model"] == "m2") & (r["optimizer"] == "sgd") & (r["strategy"] == "random"), "done"] = False
    assert list(complete_trials(r).index) == [0, 1, 3, 4, 5]
    fixed = judge("optimizer", complete_trials(r), 4, [1.0], 1.0).contrasts.iloc[0]
    early = judge("optimizer", complete_trials(r), 4, [5 / 30], 1.0).contrasts.iloc[0]
    assert early["estimate"] == pytest.approx(fixed["estimate"])
    assert early["ci_high"] - early["ci_low"] > 2 * (fixed["ci_high"] - fixed["ci_low"])


def test_contrasts_are_the_main_effects_and_interactions_of_the_cells():
    cells = list(itertools.product(("a", "b", "c"), ("x", "y"), ("s", "random")))
    opt = question_contrasts("optimizer", cells)
    assert [c.name for c in opt] == ["x - y"] and sum(opt[0].weights.values()) == pytest.approx(0)
    assert opt[0].weights[("a", "x", "s")] == pytest.approx(1 / 6)
    assert len(question_contrasts("model", cells)) == 3 and len(question_contrasts("model:optimizer", cells)) == 3
    gain = question_contrasts("s vs random", cells)[0]
    assert gain.weights[("b", "y", "random")] == pytest.approx(-1 / 6)


@pytest.mark.parametrize("balanced", [True, False])
def test_estimates_equal_statsmodels_mixed_model(balanced):
    """Trial and model-within-trial as random effects (a split plot): on a balanced table the
    per-trial contrasts' means are the mixed model's fixed-effect contrasts; on an unbalanced one,
    those of the mixed model fitted to the complete trials the analysis keeps."""
    r = runs_table({("m1", "adam"): 2.0, ("m2", "sgd"): 1.0}, n_trials=6, seed=3)
    if not balanced:
        r = r.drop(r.index[(r["trial"] == 4) & (r["model"] == "m1")][:2])
    wide = complete_trials(r)
    got = {v.question: v.contrasts for v in decide(r, ["optimizer", "model"], 1.0, [1.0])}
    kept = r[r["trial"].isin(wide.index)].assign(y=lambda d: d["aubc"] * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(
            "y ~ C(model, Sum) * C(optimizer, Sum) * C(strategy, Sum)",
            kept,
            groups="trial",
            vc_formula={"plot": "0 + C(model)"},
        ).fit(reml=True)
    # Sum coding: the optimizer main effect adam - sgd is twice the adam coefficient
    assert got["optimizer"].iloc[0]["estimate"] == pytest.approx(2 * fit.fe_params["C(optimizer, Sum)[S.adam]"], abs=1e-6)
    assert got["model"].iloc[0]["estimate"] == pytest.approx(2 * fit.fe_params["C(model, Sum)[S.m1]"], abs=1e-6)
    # the optimizer contrast's interval: a t interval of the trials' contrasts (n - 1 df)
    per_trial = (wide.xs("adam", level="optimizer", axis=1) - wide.xs("sgd", level="optimizer", axis=1)).mean(1)
    lo, hi = stats.t.interval(1 - 0.05 / 2, len(per_trial) - 1, per_trial.mean(), stats.sem(per_trial))
    assert (got["optimizer"].iloc[0]["ci_low"], got["optimizer"].iloc[0]["ci_high"]) == pytest.approx((lo, hi))


def test_the_analysis_section_is_validated():
    ok = load_sweep("jobs/smoke.yaml", ["analysis.primary=[optimizer, entropy vs random]", "analysis.margin=0.5"])
    assert ok.raw["analysis"]["primary"] == ["optimizer", "entropy vs random"] and ok.raw["analysis"]["margin"] == 0.5
    for bad, says in [
        ("analysis.primary=[bogus]", "not a question of this sweep"),
        ("analysis.primary=[margin vs random]", "not a question of this sweep"),
        ("analysis.margin=0", "positive number"),
        ("analysis.sequential={first: 1}", "integer >= 2"),
        ("analysis.sequential={first: 5, step: 5, max: 30}", "numbers its trials in waves"),
        ("analysis.oops=1", "unknown key analysis.oops"),
    ]:
        with pytest.raises(ConfigError, match=says):
            load_sweep("jobs/smoke.yaml", [bad])


def test_simulated_studies_keep_the_error_rate_and_find_a_one_point_optimizer_effect():
    """bench/bench_study with few studies (make bench runs 1,000 per scenario): whole curves, shared
    initial weights, unequal variances, diverged runs, sequential looks. Binomial bounds at 99.9%."""
    from bench.bench_study import run

    null = run("fair", 0.0, 60, seed=11)
    assert null["false_claims"] * 60 <= stats.binom.ppf(0.999, 60, 0.05)
    planted = run("fair", 1.0, 40, seed=12)
    assert planted["false_claims"] * 40 <= stats.binom.ppf(0.999, 40, 0.05)
    assert planted["power"] * 40 >= stats.binom.ppf(0.001, 40, 0.8), planted


def test_the_default_primary_questions_are_those_the_grid_can_ask():
    from analysis.decide import default_primary, settings

    assert default_primary(["margin", "random"]) == ["optimizer", "model", "model:optimizer", "margin vs random"]
    assert default_primary(["margin", "random"], n_models=1) == ["optimizer", "margin vs random"]
    assert default_primary(["random"], n_models=3, n_optimizers=1) == ["model"]
    assert settings({"analysis": {"primary": ["optimizer"]}}, ["random"], 1, 1)["primary"] == ["optimizer"]  # as declared
