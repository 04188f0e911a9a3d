"""The claims (analysis.questions) and trial planning (analysis.planning): calibrated by simulation,
equal to statsmodels' and scipy's numbers, never from a raw p-value, split by precision."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from analysis import compute_tables, findings, load_sweep_dir, summary_lines
from analysis.metrics import add_holm, holm
from analysis.planning import POINTS, power_table
from analysis.questions import answer, interaction_test, pairwise
from bench.bench_calibration import QUESTIONS, calibrate
from bench.synthetic_sweep import simulate_runs, write_synthetic_sweep

KEYS = ["dataset", "model", "optimizer", "strategy"]


def test_without_effects_no_question_claims_more_than_5_percent_and_a_2_point_optimizer_is_found():
    """Binomial bounds: with a true rate of 5% a count above the 99.9% quantile (per question)
    fails; with a true power of 80% a count below the 0.1% quantile fails. Deterministic seeds."""
    n_null, n_effect = 200, 60
    null = calibrate(n_null, 0.0, seed=1)
    for q in QUESTIONS:
        assert null[q] * n_null <= stats.binom.ppf(0.999, n_null, 0.05), (q, null[q])
    planted = calibrate(n_effect, 2.0, seed=2)
    assert planted["detected"] * n_effect >= stats.binom.ppf(0.001, n_effect, 0.8), planted


def test_holm_equals_statsmodels_within_each_group():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.2, 12)
    p[4] = np.nan
    assert holm(p)[np.isfinite(p)] == pytest.approx(multipletests(p[np.isfinite(p)], method="holm")[1])
    table = pd.DataFrame({"g": list("aabbbbcccccc"), "p_value": p})
    out = add_holm(table, ["g"])
    for g, rows in out.groupby("g"):
        ok = rows["p_value"].notna()
        assert rows.loc[ok, "p_holm"].to_numpy() == pytest.approx(multipletests(rows.loc[ok, "p_value"], method="holm")[1])
        assert rows.loc[~ok, "p_holm"].isna().all()


def test_pair_tests_equal_scipy_paired_t_test_with_cohens_dz():
    runs = simulate_runs(np.random.default_rng(4), n_trials=6, optimizer_effect=0.01)
    opt = pairwise(runs, KEYS, "optimizer")
    for _, r in opt.iterrows():
        g = runs[(runs["model"] == r["model"]) & (runs["strategy"] == r["strategy"])]
        a = g[g["optimizer"] == r["optimizer_a"]].sort_values("trial")["aubc"].to_numpy()
        b = g[g["optimizer"] == r["optimizer_b"]].sort_values("trial")["aubc"].to_numpy()
        assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
        assert r["d_z"] == pytest.approx((a - b).mean() / (a - b).std(ddof=1))
    # one family per question: Holm over every optimizer pair of the dataset
    assert opt["p_family"].to_numpy() == pytest.approx(multipletests(opt["p_value"], method="holm")[1])
    assert (opt["significant"] == (opt["p_family"] < 0.05)).all()


def test_interaction_test_equals_statsmodels_anova_with_the_whole_plot_as_block():
    runs = simulate_runs(np.random.default_rng(5), models=("a", "b", "c"), strategies=("random",), n_trials=4)
    runs.loc[(runs["model"] == "c") & (runs["optimizer"] == "sgd"), "aubc"] += 0.01
    f, p, df = interaction_test(runs)
    frame = runs.assign(y=runs["aubc"], trial=runs["trial"].astype(str))
    formula = "y ~ C(trial):C(model) + C(model) * C(optimizer)"
    ref = anova_lm(ols(formula, data=frame).fit(), typ=2).loc["C(model):C(optimizer)"]
    assert (f, p, df) == pytest.approx((ref["F"], ref["PR(>F)"], ref["df"]))


def test_power_equals_statsmodels_for_a_known_paired_variance():
    """Paired differences with SD exactly 1 point: sd_paired is 1, and power and trials needed are
    statsmodels' TTestPower at the question's per-test level (Holm's first step)."""
    rows = []
    for model in ("r18", "r34"):
        for t, d in enumerate([-0.01, 0.0, 0.01]):  # SD of the differences: exactly 0.01 (1 point)
            rows += [
                dict(
                    run_id=f"{model}-a-{t}", dataset="d", model=model, optimizer="adam", strategy="random", trial=t, aubc=0.7 + d
                ),
                dict(run_id=f"{model}-s-{t}", dataset="d", model=model, optimizer="sgd", strategy="random", trial=t, aubc=0.7),
            ]
    runs = pd.DataFrame(rows).assign(done=True, train_time_s=3600.0, select_time_s=0.0, eval_time_s=0.0)
    a = answer(runs, KEYS)
    tables = SimpleNamespace(
        keys=KEYS, runs=runs, optimizers=a.optimizers, models=a.models, interaction=a.interaction, gains=a.gains
    )
    power = power_table(tables, effect=1.5).set_index("question")
    row = power.loc["optimizer"]
    assert row["sd_paired"] == pytest.approx(1.0) and row["alpha"] == pytest.approx(0.05 / 2) and row["n_trials_now"] == 3
    assert row["power_now"] == pytest.approx(TTestPower().power(effect_size=1.5, nobs=3, alpha=0.025))
    needed = TTestPower().solve_power(effect_size=1.5, nobs=None, alpha=0.025, power=0.8)
    assert row["trials_needed"] == math.ceil(needed)
    # 4 runs per trial of 1 h each: the extra trials of the whole grid
    assert row["device_hours_needed"] == pytest.approx((math.ceil(needed) - 3) * 4)
    assert POINTS == 100


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    write_synthetic_sweep(root, strategies=("entropy", "random"), trials=(0, 1, 2, 3), cycles=3)
    return compute_tables(load_sweep_dir(root))


def test_findings_and_summary_use_no_raw_p_and_claim_exactly_the_significant_rows(tables):
    before = findings(tables), summary_lines(tables)
    shaken = {}
    for name in ("optimizers", "models", "gains", "vs_random", "ranking"):
        frame = getattr(tables, name).copy()
        for col in ("p_value", "p_holm"):
            if col in frame:
                frame[col] = 1e-9  # every raw or narrowly corrected p "significant"
        shaken[name] = frame
    inter = tables.interaction.assign(p_value=1e-9)
    anova = tables.anova.assign(p_value=1e-9)
    changed = SimpleNamespace(**{**vars(tables), **shaken, "interaction": inter, "anova": anova})
    changed.keys, changed.status_counts = tables.keys, tables.status_counts
    assert (findings(changed), summary_lines(changed)) == before
    # the summary's claims are the significant rows, one 'X > Y (' per row
    lines = summary_lines(tables)
    opt_line = next(line for line in lines if "between optimizers" in line)
    assert opt_line.count(" > ") == int(tables.optimizers["significant"].sum())
    gain_line = next(line for line in lines if line.startswith("entropy vs random"))
    assert gain_line.count("entropy > random") + gain_line.count("entropy < random") == int(tables.gains["significant"].sum())
    none = SimpleNamespace(**{**vars(changed), "optimizers": tables.optimizers.assign(significant=False)})
    none.keys, none.status_counts = tables.keys, tables.status_counts
    assert any(line.startswith("No evidence of a difference between optimizers") for line in summary_lines(none))


def test_questions_csv_has_one_row_per_question(tables):
    q = tables.questions
    assert set(q["question"]) == {"optimizer", "model", "model:optimizer", "entropy vs random"}
    assert {"dataset", "question", "test", "statistic", "p_value", "significant"} <= set(q.columns)
    # the default primary questions carry a verdict of their own analysis (analysis.decide) ...
    assert set(q.loc[q["primary"], "question"]) == {"optimizer", "model", "model:optimizer", "entropy vs random"}
    assert set(q["verdict"]) <= {"difference", "equivalent", "undecided"} and len(q) == 4
    # ... while the per-cell families keep their Holm answer (Answer.questions, optimizers.csv)
    opt = tables.claims.questions.set_index("question").loc["optimizer"]
    assert opt["significant"] == bool(tables.optimizers["significant"].any())
    assert opt["p_value"] == pytest.approx(tables.optimizers["p_family"].min())


def test_gains_leave_out_pairs_with_different_tuned_values():
    runs = simulate_runs(np.random.default_rng(6), strategies=("entropy", "random"), n_trials=4)
    runs["tuned"] = "lr=0.1"
    runs.loc[(runs["strategy"] == "entropy") & (runs["trial"] == 0), "tuned"] = "lr=0.01"
    a = answer(runs, KEYS)
    assert a.gains_tuned_dropped == 4  # trial 0 of each model x optimizer
    assert (a.gains["n_pairs"] == 3).all()


def test_two_precisions_are_never_paired_and_the_report_says_so(tmp_path):
    write_synthetic_sweep(tmp_path, trials=(0, 1, 2), cycles=2, precision=lambda m, o, s, t: "bf16" if o == "sgd" else "fp32")
    t = compute_tables(load_sweep_dir(tmp_path))
    assert "precision" in t.keys
    assert t.optimizers.empty  # sgd ran in bf16, adam in fp32: no optimizer pair within a precision
    assert set(t.questions["precision"]) == {"bf16", "fp32"}
    for _, r in t.models.iterrows():
        mine = t.runs[(t.runs["precision"] == r["precision"]) & (t.runs["optimizer"] == r["optimizer"])]
        assert {r["model_a"], r["model_b"]} <= set(mine["model"])
    from analysis.headline import PRECISION_NOTE, headline_blocks

    assert ("p", PRECISION_NOTE) in headline_blocks(t)


def test_power_command_writes_power_csv(tmp_path, capsys):
    from analysis.power import main

    write_synthetic_sweep(tmp_path, trials=(0, 1, 2), cycles=2)
    assert main(["--results", str(tmp_path), "--effect", "2"]) == 0
    power = pd.read_csv(tmp_path / "report" / "power.csv")
    cols = [
        "dataset",
        "question",
        "effect",
        "sd_paired",
        "alpha",
        "n_trials_now",
        "power_now",
        "trials_needed",
        "device_hours_needed",
    ]
    assert list(power.columns) == cols and (power["effect"] == 2).all()
    assert "trials_needed" in capsys.readouterr().out
    assert main(["--results", str(tmp_path), "--effect", "0"]) == 2
