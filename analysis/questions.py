"""The study's claims, with a known error rate: the statistical core over a run-level table.

Each question is one family per unit (dataset, and every further key such as precision or an extra
grid axis): `optimizer` (every optimizer pair of every strategy x model), `model` (every model pair
of every strategy x optimizer), `model:optimizer` (one interaction test per strategy) and each
`<strategy> vs random` (that strategy's gain over random of every model x optimizer). Pairs are
paired by trial (two-sided paired t-test); the interaction is an F-test of a two-way ANOVA with the
model within a trial as a block (split plot). Holm's method over the family's tests controls the chance that a question claims
anything that is not there at ALPHA, whatever the dependence between its tests; a row is
`significant` exactly when its Holm-adjusted p (`p_family`) is below ALPHA. No file is read:
`answer(runs, keys)` takes the runs table (one row per run with `aubc`), so simulations call it
directly (bench/bench_calibration.py).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.metrics import EQUAL_TOL, PAIR_COLUMNS, RANDOM, add_holm, holm, paired_table

ALPHA = 0.05  # the chance, per question and unit, of claiming a difference that is not there
FACTORS = ("model", "optimizer", "strategy")
QUESTION_COLUMNS = ["question", "test", "n_tests", "statistic", "p_value", "significant"]


def unit_keys(keys: list[str]) -> list[str]:
    """The keys that make a unit of study (dataset, precision, extra axes): one family per unit."""
    return [k for k in keys if k not in FACTORS]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose AUBC counts: done, with an AUBC."""
    return runs[runs["done"].astype(bool) & runs["aubc"].notna()]


def pairwise(runs: pd.DataFrame, keys: list[str], factor: str, metric: str = "aubc") -> pd.DataFrame:
    """Every pair a < b (alphabetical) of `factor`'s values within each group of the other keys
    with a trial finished by both: diff = metric(a) - metric(b) of finished runs paired by trial;
    mean_a, mean_b over every finished run. `p_holm`: Holm over the pairs of one group
    (descriptive); `p_family`, `significant`: Holm over the question's family."""
    within = [k for k in keys if k != factor]
    a_col, b_col = f"{factor}_a", f"{factor}_b"
    r = finished(runs)[[*within, factor, "trial", metric]].drop_duplicates([*within, factor, "trial"])
    pairs = r.merge(r, on=[*within, "trial"], suffixes=("_a", "_b"))
    pairs = pairs[pairs[a_col].astype(str) < pairs[b_col].astype(str)]
    pairs = pairs.assign(diff=pairs[f"{metric}_a"] - pairs[f"{metric}_b"])
    out = paired_table(pairs, [*within, a_col, b_col])
    means = r.groupby([*within, factor], observed=True)[metric].mean()
    for side in ("a", "b"):
        name = means.rename(f"mean_{side}").reset_index().rename(columns={factor: f"{factor}_{side}"})
        out = out.merge(name, on=[*within, f"{factor}_{side}"], how="left")
    out = mark_family(add_holm(out, within), unit_keys(keys))
    order = [*within, a_col, b_col, "n_pairs", "mean_a", "mean_b", *PAIR_COLUMNS[1:]]
    return out[[*order, "p_holm", "p_family", "significant"]]


def gains(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> tuple[pd.DataFrame, int]:
    """gains.csv and the number of pairs left out: per non-random strategy and model x optimizer,
    the paired-by-trial gain metric(strategy) - metric(random) of finished runs. A pair whose runs
    chose different tuned hyper-parameters (`tuned`, when runs carry it) is left out and counted,
    as module_effect.csv does. `p_holm`: Holm over one strategy's groups (descriptive);
    `p_family`, `significant`: Holm over the `<strategy> vs random` question of the unit."""
    pair_on = [k for k in keys if k != "strategy"]
    r = finished(runs)
    extra = ["tuned"] if "tuned" in r else []
    rnd = r[r["strategy"] == RANDOM][[*pair_on, "trial", metric, *extra]]
    other = r[r["strategy"] != RANDOM][[*keys, "trial", metric, *extra]]
    pairs = other.merge(rnd, on=[*pair_on, "trial"], suffixes=("", "_random"))
    dropped = 0
    if extra:
        same = pairs["tuned"].fillna("").astype(str) == pairs["tuned_random"].fillna("").astype(str)
        dropped, pairs = int((~same).sum()), pairs[same]
    out = paired_table(pairs.assign(diff=pairs[metric] - pairs[f"{metric}_random"]), keys)
    out = add_holm(out, [k for k in keys if k not in ("model", "optimizer")])
    return mark_family(out, [*unit_keys(keys), "strategy"]), dropped


def mark_family(table: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """`p_family`: Holm over the rows of each family; `significant`: p_family < ALPHA."""
    out = add_holm(table, family, out="p_family") if len(table) else table.assign(p_family=np.nan)
    out["significant"] = (out["p_family"] < ALPHA).astype(bool)
    return out


def interaction(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> pd.DataFrame:
    """Per unit x strategy: the model x optimizer interaction F-test of `metric ~ C(trial):C(model) +
    C(model) * C(optimizer)` (type II, the model within a trial as a block); Holm over the unit's strategies."""
    by = [k for k in keys if k not in ("model", "optimizer")]
    rows = []
    for group, g in finished(runs).groupby(by, observed=True, sort=True):
        f, p, df = interaction_test(g, metric)
        if math.isfinite(p):
            rows.append([*group, f, df, p])
    out = pd.DataFrame(rows, columns=[*by, "F", "df", "p_value"])
    return mark_family(out, unit_keys(keys))


def interaction_test(g: pd.DataFrame, metric: str = "aubc") -> tuple[float, float, float]:
    """F, p and df of the model:optimizer term of `metric ~ C(trial):C(model) + C(model) * C(optimizer)`
    (type II: the full model against the additive one), NaN when not testable. The block is the
    whole plot, a model within a trial (its runs share their initial weights: a split plot), so the
    whole-plot variance stays out of the interaction's error. Least squares in numpy, equal to
    statsmodels' anova_lm on that formula (a test checks it) at a fraction of the cost, for the
    calibration's thousands of sweeps."""
    if g["model"].nunique() < 2 or g["optimizer"].nunique() < 2:
        return math.nan, math.nan, math.nan
    y = g[metric].to_numpy(float)
    model, optimizer = g["model"].astype(str).to_numpy(), g["optimizer"].astype(str).to_numpy()
    plot = _dummies(np.char.add(np.char.add(g["trial"].astype(str).to_numpy(), "\0"), model))
    additive = np.column_stack([plot, _dummies(optimizer)[:, 1:]])
    full = np.column_stack([plot, _dummies(np.char.add(np.char.add(model, "\0"), optimizer))])
    rss_add, rank_add = _rss(additive, y)
    rss_full, rank_full = _rss(full, y)
    df_int, df_res = rank_full - rank_add, len(y) - rank_full
    if df_int < 1 or df_res < 1 or rss_full <= EQUAL_TOL**2:
        return math.nan, math.nan, math.nan
    f = ((rss_add - rss_full) / df_int) / (rss_full / df_res)
    return float(f), float(stats.f.sf(f, df_int, df_res)), float(df_int)


def _dummies(values: np.ndarray) -> np.ndarray:
    """One indicator column per distinct value, in sorted order."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.eye(len(uniques))[codes]


def _rss(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Residual sum of squares and rank of the least-squares fit of y on x."""
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    return float(((y - x @ coef) ** 2).sum()), int(rank)


@dataclass
class Answer:
    """The claims of a sweep: the pair tables with `significant`, the interaction tests, the
    questions table, and the gain pairs left out for differing tuned hyper-parameters."""

    optimizers: pd.DataFrame
    models: pd.DataFrame
    interaction: pd.DataFrame
    gains: pd.DataFrame
    questions: pd.DataFrame
    gains_tuned_dropped: int = 0


def answer(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> Answer:
    """Every question of the sweep, from the run-level table (no files)."""
    optimizers = pairwise(runs, keys, "optimizer", metric)
    models = pairwise(runs, keys, "model", metric)
    inter = interaction(runs, keys, metric)
    gn, dropped = gains(runs, keys, metric)
    q = questions_table(optimizers, models, inter, gn, keys)
    return Answer(optimizers, models, inter, gn, q, dropped)


def family_rows(table: pd.DataFrame, unit: list[str], question, test: str, stat: str) -> pd.DataFrame:
    """One questions.csv row per unit of `table` (per strategy too when `question` is callable):
    the family's strongest test (smallest Holm-adjusted p) gives `statistic` and `p_value`."""
    by = unit + (["strategy"] if callable(question) else [])
    if table.empty:
        return pd.DataFrame(columns=[*unit, *QUESTION_COLUMNS])
    t = table.assign(_p=table["p_family"].fillna(np.inf)).sort_values([*by, "_p"], kind="stable")
    n_tests = t.groupby(by, observed=True, sort=False)["p_family"].transform("count")
    top = t.assign(n_tests=n_tests).drop_duplicates(by)
    tested = top["n_tests"] > 0
    names = top["strategy"].astype(str).map(question) if callable(question) else question
    plural = np.where(top["n_tests"] == 1, "", "s")
    text = np.where(tested, test + "; Holm over " + top["n_tests"].astype(str) + " test" + plural, test + "; nothing testable")
    return pd.DataFrame(
        {
            **{k: top[k].to_numpy() for k in unit},
            "question": names,
            "test": text,
            "n_tests": top["n_tests"].to_numpy(int),
            "statistic": np.where(tested, top[stat].astype(float), np.nan),
            "p_value": top["p_family"].to_numpy(float),
            "significant": (top["p_family"] < ALPHA).to_numpy(bool),
        }
    )


def questions_table(
    optimizers: pd.DataFrame, models: pd.DataFrame, inter: pd.DataFrame, gn: pd.DataFrame, keys: list[str]
) -> pd.DataFrame:
    """questions.csv: one row per unit and question. `statistic` and `p_value` are those of the
    family's strongest test (t, or F for the interaction), p Holm-adjusted: the question's p."""
    unit = unit_keys(keys)
    paired_test = "two-sided paired t-tests of AUBC by trial over every {} pair of every {}"
    inter_test = "F-test of the model x optimizer interaction in AUBC ~ C(trial):C(model) + C(model) * C(optimizer), per strategy"
    gain_test = "two-sided paired t-tests by trial of the AUBC gain over random of every model x optimizer"
    parts = [
        family_rows(optimizers, unit, "optimizer", paired_test.format("optimizer", "strategy x model"), "t"),
        family_rows(models, unit, "model", paired_test.format("model", "strategy x optimizer"), "t"),
        family_rows(inter, unit, "model:optimizer", inter_test, "F"),
        family_rows(gn, unit, lambda s: f"{s} vs random", gain_test, "t"),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=[*unit, *QUESTION_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    out["significant"] = out["significant"].astype(bool)
    return out


__all__ = [
    "ALPHA",
    "Answer",
    "answer",
    "gains",
    "holm",
    "interaction",
    "pairwise",
    "paired_table",
    "questions_table",
    "unit_keys",
]
