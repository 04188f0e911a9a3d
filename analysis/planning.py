"""Trials you can plan: per unit and question, the power of the question's tests now and the
trials needed for 80% power, from the paired variance observed (statsmodels' TTestPower).

The test of a pair question is a two-sided paired t-test at the question's per-test level: Holm's
first step, ALPHA / (tests in the family). That is the level the first claim must pass, so the
power is a lower bound for Holm. The interaction question is planned as the 2 x 2 contrast
(gap between two optimizers on one model minus that gap on another), whose SD is taken as
sqrt(2) x the optimizer question's paired SD (independent differences); with more levels this is
an approximation. `power.csv` is written by the report and by `python -m analysis.power`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from analysis.metrics import rows_matching, run_seconds
from analysis.questions import ALPHA, unit_keys
from analysis.render import number

POWER = 0.8  # the power a plan aims for
MAX_TRIALS = 10_000  # beyond this a plan is reported as not reachable (NaN)
POINTS = 100.0  # AUBC is stored as a fraction; the planning unit is one AUBC point
COLUMNS = ["question", "effect", "sd_paired", "alpha", "n_trials_now", "power_now", "trials_needed", "device_hours_needed"]


def pooled_sd(sd: pd.Series, n: pd.Series) -> float:
    """The pooled SD of paired differences: sqrt(sum((n - 1) sd^2) / sum(n - 1)); NaN without any."""
    ok = np.isfinite(sd.to_numpy(float)) & (n.to_numpy(float) >= 2)
    if not ok.any():
        return math.nan
    df = n[ok].to_numpy(float) - 1
    return float(math.sqrt((df * sd[ok].to_numpy(float) ** 2).sum() / df.sum()))


def plan(effect: float, sd: float, alpha: float, n_now: int) -> tuple[float, float]:
    """(power now, trials needed for POWER) of a two-sided paired t-test (statsmodels TTestPower)
    for a difference of `effect` with paired SD `sd`, at level `alpha`."""
    from statsmodels.stats.power import TTestPower

    if not (math.isfinite(sd) and sd > 0 and math.isfinite(alpha)):
        return math.nan, math.nan
    es = effect / sd
    test = TTestPower()
    now = float(test.power(effect_size=es, nobs=n_now, alpha=alpha, alternative="two-sided")) if n_now >= 2 else math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns, and returns NaN, when its root finder fails
        try:
            needed = float(test.solve_power(effect_size=es, nobs=None, alpha=alpha, power=POWER, alternative="two-sided"))
        except (ValueError, RuntimeError):
            needed = math.nan
        if not math.isfinite(needed):  # the power curve itself, up to MAX_TRIALS trials
            n = np.arange(2, MAX_TRIALS + 1)
            reached = np.flatnonzero(test.power(effect_size=es, nobs=n, alpha=alpha, alternative="two-sided") >= POWER)
            needed = float(n[reached[0]]) if len(reached) else math.nan
    return now, float(max(2, math.ceil(needed))) if math.isfinite(needed) else math.nan


def family_plan(rows: pd.DataFrame, effect: float, sd_scale: float = 1.0) -> list:
    """effect, sd_paired, alpha, n_trials_now, power_now, trials_needed of one family of pair rows."""
    tests = max(int(rows["p_value"].notna().sum()), 1)
    sd = pooled_sd(rows["diff_sd"], rows["n_pairs"]) * POINTS * sd_scale
    alpha = ALPHA / tests
    n_now = int(rows["n_pairs"].median()) if len(rows) else 0
    now, needed = plan(effect, sd, alpha, n_now)
    return [effect, sd, alpha, n_now, now, needed]


def hours_per_trial(runs: pd.DataFrame) -> float:
    """Device-hours of one more trial of a unit's grid: runs per trial x mean seconds of a finished
    run (train + select + eval, and tuning where it tuned); NaN when no run time is known."""
    done = runs[runs["done"].astype(bool)]
    seconds = run_seconds(done).dropna()
    if seconds.empty:
        return math.nan
    per_trial = runs.groupby(["model", "optimizer", "strategy"], observed=True).ngroups
    return float(seconds.mean()) * per_trial / 3600


def power_table(tables, effect: float = 1.0) -> pd.DataFrame:
    """power.csv: per unit (dataset, further keys) and question, for a difference of `effect`
    AUBC points. device_hours_needed: the extra trials (trials_needed - n_trials_now) of the
    unit's whole grid, from the runs' times; NaN where no run time is known."""
    unit = unit_keys(tables.keys)
    rows = []
    for values, runs in tables.runs.groupby(unit, observed=True, sort=True):
        where = dict(zip(unit, values))
        hours = hours_per_trial(runs)
        for question, plan_row in unit_plans(tables, where, effect):
            extra = max(plan_row[5] - plan_row[3], 0) if math.isfinite(plan_row[5]) else math.nan
            rows.append([*values, question, *plan_row, extra * hours if math.isfinite(hours) else math.nan])
    out = pd.DataFrame(rows, columns=[*unit, *COLUMNS])
    out["trials_needed"] = out["trials_needed"].astype("Int64")  # a whole number of trials, or empty
    return out


def unit_plans(tables, where: dict, effect: float) -> list[tuple[str, list]]:
    """(question, plan row) for each question of one unit that has pairs to plan from."""
    out = []
    optimizers = rows_matching(tables.optimizers, where)
    for name, frame in (("optimizer", optimizers), ("model", rows_matching(tables.models, where))):
        if len(frame):
            out.append((name, family_plan(frame, effect)))
    inter = rows_matching(getattr(tables, "interaction", pd.DataFrame()), where)
    if len(optimizers) and len(inter):
        row = family_plan(optimizers, effect, sd_scale=math.sqrt(2))
        row[2] = ALPHA / len(inter)  # Holm over the unit's strategies
        row[4], row[5] = plan(effect, row[1], row[2], row[3])
        out.append(("model:optimizer", row))
    gn = rows_matching(tables.gains, where)
    for strategy, frame in gn.groupby("strategy", observed=True, sort=True) if len(gn) else []:
        out.append((f"{strategy} vs random", family_plan(frame, effect)))
    return out


def display_power(power: pd.DataFrame) -> list[tuple]:
    """Report blocks: what power.csv says, as a paragraph and a table."""
    shown = power.assign(
        sd_paired=number(power["sd_paired"]),
        alpha=number(power["alpha"], digits=4),
        power_now=number(power["power_now"]),
        trials_needed=number(power["trials_needed"].astype(float), digits=0),
        device_hours_needed=number(power["device_hours_needed"]),
    ).astype(str)
    text = (
        f"Power of each question (power.csv) for a difference of {power['effect'].iloc[0]:g} AUBC point(s), from the "
        f"paired SD observed: power now and the trials needed for {POWER:.0%} power (two-sided paired t-test, "
        "statsmodels TTestPower) at the question's per-test level (Holm's first step); device-hours for the "
        "extra trials of the whole grid. Plan another effect with: al-sweep power SWEEP.yaml --effect POINTS."
    )
    return [("p", text), ("table", shown)]
