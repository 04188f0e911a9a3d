"""The report's headline against an independent computation on synthetic runs with known effects:
an optimizer effect, a model x optimizer interaction, a strategy gain; partial and missing runs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from analysis import compute_tables, load_sweep_dir
from analysis.build import write_report
from analysis.headline import FLAG, grid_tables, holm
from analysis.load import ExpectedRun
from analysis.metrics import summary_table

MODELS, OPTIMIZERS, STRATEGIES, TRIALS = ("resnet18", "resnet34"), ("adam", "sgd"), ("entropy", "random"), (0, 1, 2, 3)
BUDGETS = [20, 40, 60, 80]


def effect(model: str, optimizer: str, strategy: str) -> float:
    """Known accuracy offsets: sgd +4 points on resnet18 only (an optimizer effect and an
    interaction), resnet34 +1, entropy +3 over random."""
    return (
        (0.04 if (optimizer == "sgd" and model == "resnet18") else 0.0)
        + (0.01 if model == "resnet34" else 0.0)
        + (0.03 if strategy == "entropy" else 0.0)
    )


def write_run(root, model, optimizer, strategy, trial, acc, cycles=None, done=True, suffix=""):
    run_id = f"{model}-{optimizer}-{strategy}-t{trial}{suffix}"
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    rows = []
    for cycle, (n, a) in enumerate(zip(BUDGETS, acc), 1):
        if cycles is not None and cycle > cycles:
            break
        rows.append(
            {
                "run_id": run_id,
                "dataset": "syn",
                "model": model,
                "optimizer": optimizer,
                "strategy": strategy,
                "trial": trial,
                "cycle": cycle,
                "n_labeled": n,
                "n_pool": 1000,
                "test_accuracy": float(a),
                "test_macro_f1": float(a),
                "queried_class_counts": [n // 2, n // 2],
                "per_class_accuracy": [a, a],
            }
        )
    (d / "run.json").write_text(json.dumps({"run_id": run_id, "config": {"al": {"cycles": len(BUDGETS)}}}))
    (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if done:
        (d / "DONE").write_text("")
    return run_id


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Every group has 4 trials, except: resnet34-adam-random-t3 is in progress (2 of 4 cycles),
    resnet34-adam-entropy-t3 never started (expected, missing) -> those groups have 3 finished
    runs; resnet34-sgd-random has only trials 0 and 1 finished (a 2-trial group)."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(7)
    expected, aubcs = [], {}
    trial_shift = {t: rng.normal(0, 0.01) for t in TRIALS}  # shared by the runs of a trial: pairing matters
    for m, o, s, t in itertools.product(MODELS, OPTIMIZERS, STRATEGIES, TRIALS):
        run_id = f"{m}-{o}-{s}-t{t}"
        expected.append(ExpectedRun(run_id, m, o, s, t))
        if run_id == "resnet34-adam-entropy-t3" or (m, o, s) == ("resnet34", "sgd", "random") and t >= 2:
            continue
        base = np.array([0.5, 0.65, 0.72, 0.76]) + effect(m, o, s) + trial_shift[t]
        acc = np.clip(base + rng.normal(0, 0.003, len(BUDGETS)), 0, 1)
        partial = run_id == "resnet34-adam-random-t3"
        write_run(root, m, o, s, t, acc, cycles=2 if partial else None, done=not partial)
        if not partial:  # the independent AUBC: trapezoid over the budget, divided by its span
            aubcs[(m, o, s, t)] = np.trapezoid(acc, BUDGETS) / (BUDGETS[-1] - BUDGETS[0])
    data = load_sweep_dir(root, expected=expected, cycles_expected=len(BUDGETS))
    return root, compute_tables(data), aubcs


def test_grid_matches_an_independent_mean_and_ci_and_flags_the_two_trial_group(study):
    _, tables, aubcs = study
    g = tables.grid.set_index(["model", "optimizer", "strategy"])
    for (m, o, s), row in g.iterrows():
        values = np.array([v for k, v in aubcs.items() if k[:3] == (m, o, s)])
        assert row["n"] == len(values)
        assert row["aubc_mean"] == pytest.approx(values.mean(), abs=1e-12)
        if len(values) >= 3:
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
            assert row["aubc_ci95"] == pytest.approx(half, rel=1e-9)
            assert not row["few"]
    assert g.loc[("resnet34", "adam", "random"), "n"] == 3  # the in-progress run does not count
    assert g.loc[("resnet34", "adam", "entropy"), "n"] == 3  # the missing run does not count
    few = g.loc[("resnet34", "sgd", "random")]
    assert few["n"] == 2 and few["few"] and np.isnan(few["aubc_ci95"])
    random_table = dict(grid_tables(tables.grid, tables.keys))["random"].set_index("model")
    assert random_table.loc["resnet34", "sgd"].endswith(f"(n=2 {FLAG})")
    assert "±" not in random_table.loc["resnet34", "sgd"] and "±" in random_table.loc["resnet18", "sgd"]


def test_optimizer_pairs_match_scipy_and_holm_from_statsmodels(study):
    _, tables, aubcs = study
    opt = tables.optimizers
    assert set(opt[["optimizer_a", "optimizer_b"]].itertuples(index=False, name=None)) == {("adam", "sgd")}
    for s in STRATEGIES:
        rows = opt[opt["strategy"] == s].sort_values("model")
        ps = []
        for _, r in rows.iterrows():
            trials = [t for t in TRIALS if (r["model"], "adam", s, t) in aubcs and (r["model"], "sgd", s, t) in aubcs]
            a = np.array([aubcs[(r["model"], "adam", s, t)] for t in trials])
            b = np.array([aubcs[(r["model"], "sgd", s, t)] for t in trials])
            assert r["n_pairs"] == len(trials)
            assert r["diff_mean"] == pytest.approx((a - b).mean(), abs=1e-12)
            assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
            ps.append(r["p_value"])
        # Holm within one dataset x strategy x model: one pair per model here, so p_holm == p.
        assert rows["p_holm"].to_numpy() == pytest.approx(np.array(ps))
    # The known optimizer effect: sgd beats adam on resnet18 under both strategies, after Holm.
    r18 = opt[opt["model"] == "resnet18"]
    assert (r18["diff_mean"] < -0.03).all() and (r18["p_holm"] < 0.05).all()


def test_holm_is_statsmodels_and_ignores_undefined_p_values():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    expected = multipletests([0.01, 0.04, 0.03, 0.2], method="holm")[1]
    out = holm(p)
    assert np.isnan(out[1])
    assert out[[0, 2, 3, 4]] == pytest.approx(expected)


def test_anova_matches_statsmodels_and_finds_the_interaction(study):
    _, tables, aubcs = study
    a = tables.anova
    assert set(a["term"]) == {"model", "optimizer", "model:optimizer", "Residual"}
    for s in STRATEGIES:
        frame = pd.DataFrame([{"aubc": v, "model": k[0], "optimizer": k[1]} for k, v in aubcs.items() if k[2] == s])
        ref = anova_lm(ols("aubc ~ C(model) * C(optimizer)", data=frame).fit(), typ=2)
        mine = a[a["strategy"] == s].set_index("term")
        for term, name in (("C(model)", "model"), ("C(optimizer)", "optimizer"), ("C(model):C(optimizer)", "model:optimizer")):
            assert mine.loc[name, "F"] == pytest.approx(ref.loc[term, "F"], rel=1e-9)
            assert mine.loc[name, "p_value"] == pytest.approx(ref.loc[term, "PR(>F)"], rel=1e-9)
            assert mine.loc[name, "df"] == ref.loc[term, "df"]
        assert mine.loc["Residual", "df"] == len(frame) - 4
        assert mine.loc["model:optimizer", "p_value"] < 0.05  # the known interaction


def test_anova_of_a_balanced_design_equals_the_textbook_sums_of_squares(study):
    """Balanced cells (entropy minus the resnet34-adam cell's missing trial: use trials 0-2 only):
    type II sums of squares equal the classical two-way decomposition computed by hand."""
    _, _, aubcs = study
    frame = pd.DataFrame(
        [{"aubc": v, "model": k[0], "optimizer": k[1]} for k, v in aubcs.items() if k[2] == "entropy" and k[3] < 3]
    )
    from analysis.headline import anova as headline_anova

    runs = frame.assign(dataset="syn", strategy="entropy", done=True, trial=0, run_id=range(len(frame)))
    mine = headline_anova(runs, ["dataset", "model", "optimizer", "strategy"]).set_index("term")
    grand = frame["aubc"].mean()
    n = 3
    ss_m = sum(n * 2 * (g["aubc"].mean() - grand) ** 2 for _, g in frame.groupby("model"))
    ss_o = sum(n * 2 * (g["aubc"].mean() - grand) ** 2 for _, g in frame.groupby("optimizer"))
    cells = frame.groupby(["model", "optimizer"])["aubc"].transform("mean")
    ss_e = ((frame["aubc"] - cells) ** 2).sum()
    ss_total = ((frame["aubc"] - grand) ** 2).sum()
    assert mine.loc["model", "sum_sq"] == pytest.approx(ss_m, rel=1e-9)
    assert mine.loc["optimizer", "sum_sq"] == pytest.approx(ss_o, rel=1e-9)
    assert mine.loc["Residual", "sum_sq"] == pytest.approx(ss_e, rel=1e-9)
    assert mine.loc["model:optimizer", "sum_sq"] == pytest.approx(ss_total - ss_m - ss_o - ss_e, rel=1e-8)


def test_gains_over_random_are_paired_by_trial_with_holm_over_the_strategy(study):
    _, tables, aubcs = study
    gn = tables.gains
    assert len(gn) == 4 and set(gn["strategy"]) == {"entropy"}
    for _, r in gn.iterrows():
        trials = [
            t
            for t in TRIALS
            if (r["model"], r["optimizer"], "entropy", t) in aubcs and (r["model"], r["optimizer"], "random", t) in aubcs
        ]
        a = np.array([aubcs[(r["model"], r["optimizer"], "entropy", t)] for t in trials])
        b = np.array([aubcs[(r["model"], r["optimizer"], "random", t)] for t in trials])
        assert r["n_pairs"] == len(trials)
        assert r["diff_mean"] == pytest.approx(0.03, abs=0.005)  # the known gain
        assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert gn["p_holm"].to_numpy() == pytest.approx(multipletests(gn["p_value"], method="holm")[1])
    assert gn.set_index(["model", "optimizer"]).loc[("resnet34", "sgd"), "n_pairs"] == 2


def test_vs_random_p_holm_is_over_the_rows_of_one_dataset_and_strategy(study):
    _, tables, _ = study
    vs = tables.vs_random
    ok = vs["p_value"].notna()
    assert vs.loc[ok, "p_holm"].to_numpy() == pytest.approx(multipletests(vs.loc[ok, "p_value"], method="holm")[1])


def test_report_leads_with_the_headline_and_writes_the_contract_tables(study):
    root, tables, _ = study
    html = write_report(tables).read_text()
    report = root / "report"
    md = (report / "report.md").read_text()
    assert md.index("## Headline") < md.index("## Findings") < md.index("## Tables")
    assert "## Headline" in (report / "summary.md").read_text()
    assert "Headline" in html and "aubc_gain" not in html  # the figure is embedded, not linked
    opt = pd.read_csv(report / "optimizers.csv")
    assert {
        "dataset",
        "strategy",
        "model",
        "optimizer_a",
        "optimizer_b",
        "n_pairs",
        "diff_mean",
        "diff_ci95",
        "p_value",
        "p_holm",
    } <= set(opt.columns)
    an = pd.read_csv(report / "anova.csv")
    assert {"dataset", "strategy", "term", "df", "sum_sq", "F", "p_value"} <= set(an.columns)
    assert "p_holm" in pd.read_csv(report / "vs_random.csv").columns
    groups = (report / "tables" / "groups.md").read_text()
    assert "/3 reached)" in groups or "/4 reached)" in groups


def test_summary_lines_name_the_answer(study):
    from analysis import summary_lines

    _, tables, _ = study
    lines = summary_lines(tables)
    assert len(lines) == 6 and lines[5].startswith("verdicts (study-wide 5%): optimizer ")
    assert lines[1].startswith("best by AUBC (descriptive): entropy resnet18 + sgd")
    assert lines[2].startswith("Differences between optimizers in AUBC (") and "sgd > adam (entropy · resnet18" in lines[2]
    assert "model x optimizer interaction" in lines[3] and "between models" in lines[3]
    assert lines[4].startswith("entropy vs random (AUBC, paired by trial, Holm over 4 tests): ")
    # Every claim carries its 95% CI and Cohen's d_z; every claimed gain is a significant row of gains.csv.
    assert lines[4].count("entropy > random") == int(tables.gains["significant"].sum()) > 0
    assert " ± " in lines[4] and "d_z = " in lines[4]


def test_typed_axes_sort_numerically(tmp_path):
    for width in (8, 16, 32, 64):
        for t in (0, 1):
            write_run(tmp_path, "resnet18", "sgd", "random", t, [0.5, 0.6, 0.7, 0.8 + width / 1000], suffix=f"-{width}")
    data = load_sweep_dir(tmp_path, extra_axes=["train.width"])
    widths = summary_table(data.cycles, data.keys).drop_duplicates("train.width")["train.width"].tolist()
    assert widths == [8, 16, 32, 64]
    tables = compute_tables(data)
    assert tables.grid["train.width"].tolist() == [8, 16, 32, 64]
