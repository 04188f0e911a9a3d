"""The study's claims, with a known error rate: the statistical core over a run-level table.

Each question is one family per unit (dataset, and every further key such as precision or an extra
grid axis): `optimizer` (every optimizer pair of every strategy x model), `model` (every model pair
of every strategy x optimizer), `model:optimizer` (one interaction test per strategy) and each
`<strategy> vs random` (that strategy's gain over random of every model x optimizer). Pairs are
paired by trial (two-sided paired t-test); the interaction is an F-test of a two-way ANOVA with
trial as a block. Holm's method over the family's tests controls the chance that a question claims
anything that is not there at ALPHA, whatever the dependence between its tests; a row is
`significant` exactly when its Holm-adjusted p (`p_family`) is below ALPHA. No file is read:
`answer(runs, keys)` takes the runs table (one row per run with `aubc`), so simulations call it
directly (bench/bench_calibration.py).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.metrics import EQUAL_TOL, RANDOM, add_holm, ci95, holm

ALPHA = 0.05  # the chance, per question and unit, of claiming a difference that is not there
FACTORS = ("model", "optimizer", "strategy")
PAIR_COLUMNS = ["n_pairs", "diff_mean", "diff_sd", "diff_ci95", "d_z", "t", "p_value"]
QUESTION_COLUMNS = ["question", "test", "n_tests", "statistic", "p_value", "significant"]


def unit_keys(keys: list[str]) -> list[str]:
    """The keys that make a unit of study (dataset, precision, extra axes): one family per unit."""
    return [k for k in keys if k not in FACTORS]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose AUBC counts: done, with an AUBC."""
    return runs[runs["done"].astype(bool) & runs["aubc"].notna()]


def paired(a: np.ndarray, b: np.ndarray) -> list[float]:
    """PAIR_COLUMNS of the paired difference a - b: n, mean, SD, 95% CI half-width, Cohen's d_z
    (mean / SD), t and the two-sided paired t-test p (NaN when undefined: n < 2 or all equal)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    if n == 0:
        return [0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan]
    mean = float(d.mean())
    if n < 2:
        return [n, mean, math.nan, math.nan, math.nan, math.nan, math.nan]
    sd = float(d.std(ddof=1))
    half = float(ci95(sd, n))
    if np.ptp(d) <= EQUAL_TOL:
        return [n, mean, sd, half, math.nan, math.nan, math.nan]
    t = mean / (sd / math.sqrt(n))
    return [n, mean, sd, half, mean / sd, t, float(2 * stats.t.sf(abs(t), n - 1))]


def _tuple(group) -> tuple:
    return group if isinstance(group, tuple) else (group,)


def pairwise(runs: pd.DataFrame, keys: list[str], factor: str, metric: str = "aubc") -> pd.DataFrame:
    """Every pair a < b (alphabetical) of `factor`'s values within each group of the other keys:
    diff = metric(a) - metric(b) of finished runs paired by trial. `p_holm`: Holm over the pairs
    of one group (descriptive); `p_family`, `significant`: Holm over the question's family."""
    within = [k for k in keys if k != factor]
    a_col, b_col = f"{factor}_a", f"{factor}_b"
    cols = [*within, a_col, b_col, "mean_a", "mean_b", *PAIR_COLUMNS]
    rows = []
    for group, g in finished(runs).groupby(within, observed=True, sort=True):
        wide = g.pivot_table(index="trial", columns=factor, values=metric, aggfunc="first")
        for a, b in itertools.combinations(sorted(wide.columns, key=str), 2):
            both = wide[[a, b]].dropna()
            rows.append([*_tuple(group), a, b, wide[a].mean(), wide[b].mean(), *paired(both[a], both[b])])
    out = mark_family(add_holm(pd.DataFrame(rows, columns=cols), within), unit_keys(keys))
    order = [*within, a_col, b_col, "n_pairs", "mean_a", "mean_b", *PAIR_COLUMNS[1:]]
    return out[[*order, "p_holm", "p_family", "significant"]]


def gains(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> tuple[pd.DataFrame, int]:
    """gains.csv and the number of pairs left out: per non-random strategy and model x optimizer,
    the paired-by-trial gain metric(strategy) - metric(random) of finished runs. A pair whose runs
    chose different tuned hyper-parameters (`tuned`, when runs carry it) is left out and counted,
    as module_effect.csv does. `p_holm`: Holm over one strategy's groups (descriptive);
    `p_family`, `significant`: Holm over the `<strategy> vs random` question of the unit."""
    pair_on = [k for k in keys if k != "strategy"]
    cols = [*keys, *PAIR_COLUMNS]
    r = finished(runs)
    extra = ["tuned"] if "tuned" in r else []
    rnd = r[r["strategy"] == RANDOM][[*pair_on, "trial", metric, *extra]]
    other = r[r["strategy"] != RANDOM][[*keys, "trial", metric, *extra]]
    pairs = other.merge(rnd, on=[*pair_on, "trial"], suffixes=("", "_random"))
    dropped = 0
    if extra:
        same = pairs["tuned"].fillna("").astype(str) == pairs["tuned_random"].fillna("").astype(str)
        dropped, pairs = int((~same).sum()), pairs[same]
    rows = [
        [*_tuple(group), *paired(g[metric], g[f"{metric}_random"])] for group, g in pairs.groupby(keys, observed=True, sort=True)
    ]
    out = add_holm(pd.DataFrame(rows, columns=cols), [k for k in keys if k not in ("model", "optimizer")])
    return mark_family(out, [*unit_keys(keys), "strategy"]), dropped


def mark_family(table: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """`p_family`: Holm over the rows of each family; `significant`: p_family < ALPHA."""
    out = add_holm(table, family, out="p_family") if len(table) else table.assign(p_family=np.nan)
    out["significant"] = (out["p_family"] < ALPHA).astype(bool)
    return out


def interaction(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> pd.DataFrame:
    """Per unit x strategy: the model x optimizer interaction F-test of `metric ~ C(trial) +
    C(model) * C(optimizer)` (type II, trial as a block); Holm over the unit's strategies."""
    by = [k for k in keys if k not in ("model", "optimizer")]
    rows = []
    for group, g in finished(runs).groupby(by, observed=True, sort=True):
        f, p, df = interaction_test(g, metric)
        if math.isfinite(p):
            rows.append([*_tuple(group), f, df, p])
    out = pd.DataFrame(rows, columns=[*by, "F", "df", "p_value"])
    return mark_family(out, unit_keys(keys))


def interaction_test(g: pd.DataFrame, metric: str = "aubc") -> tuple[float, float, float]:
    """F, p and df of the model:optimizer term with trial as a block; NaN when not testable."""
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    cells = g.groupby(["model", "optimizer"], observed=True).size()
    n_free = len(g) - len(cells) - (g["trial"].nunique() - 1)
    if g["model"].nunique() < 2 or g["optimizer"].nunique() < 2 or n_free < 1:
        return math.nan, math.nan, math.nan
    frame = pd.DataFrame(
        {
            "y": g[metric].to_numpy(float),
            "trial": g["trial"].astype(str).to_numpy(),
            "model": g["model"].astype(str).to_numpy(),
            "optimizer": g["optimizer"].astype(str).to_numpy(),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = anova_lm(ols("y ~ C(trial) + C(model) * C(optimizer)", data=frame).fit(), typ=2)
    row = table.loc["C(model):C(optimizer)"]
    return float(row["F"]), float(row["PR(>F)"]), float(row["df"])


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


def family_rows(table: pd.DataFrame, unit: list[str], question, test: str, stat: str) -> list[list]:
    """One questions.csv row per unit of `table` (per strategy too when `question` is callable)."""
    rows = []
    by = unit + (["strategy"] if callable(question) else [])
    if table.empty:
        return rows
    for group, t in table.groupby(by, observed=True, sort=True):
        values = _tuple(group)
        tested = t[t["p_family"].notna()]
        name = question(values[-1]) if callable(question) else question
        if tested.empty:
            rows.append([*values[: len(unit)], name, test + "; nothing testable", 0, math.nan, math.nan, False])
            continue
        top = tested.loc[tested["p_family"].idxmin()]
        text = f"{test}; Holm over {len(tested)} test{'s' if len(tested) != 1 else ''}"
        row = [*values[: len(unit)], name, text, len(tested), float(top[stat]), float(top["p_family"])]
        rows.append(row + [bool(top["p_family"] < ALPHA)])
    return rows


def questions_table(
    optimizers: pd.DataFrame, models: pd.DataFrame, inter: pd.DataFrame, gn: pd.DataFrame, keys: list[str]
) -> pd.DataFrame:
    """questions.csv: one row per unit and question. `statistic` and `p_value` are those of the
    family's strongest test (t, or F for the interaction), p Holm-adjusted: the question's p."""
    unit = unit_keys(keys)
    paired_test = "two-sided paired t-tests of AUBC by trial over every {} pair of every {}"
    rows = family_rows(optimizers, unit, "optimizer", paired_test.format("optimizer", "strategy x model"), "t")
    rows += family_rows(models, unit, "model", paired_test.format("model", "strategy x optimizer"), "t")
    inter_test = "F-test of the model x optimizer interaction in AUBC ~ C(trial) + C(model) * C(optimizer), per strategy"
    rows += family_rows(inter, unit, "model:optimizer", inter_test, "F")
    gain_test = "two-sided paired t-tests by trial of the AUBC gain over random of every model x optimizer"
    rows += family_rows(gn, unit, lambda s: f"{s} vs random", gain_test, "t")
    out = pd.DataFrame(rows, columns=[*unit, *QUESTION_COLUMNS])
    out["significant"] = out["significant"].astype(bool)
    return out


__all__ = ["ALPHA", "Answer", "answer", "gains", "holm", "interaction", "pairwise", "paired", "questions_table", "unit_keys"]
