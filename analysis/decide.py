"""The study's primary questions and their verdicts: `difference`, `equivalent` or `undecided`.

The design is a split plot: a trial is a block, the runs of one model and trial share their initial
weights (the whole plot), and optimizer x strategy vary within it. The analysis treats the trial as
the unit of replication. Each contrast (a pair of optimizers averaged over every model x strategy
cell of the unit, a pair of models, an interaction contrast, a strategy's gain over random) is
computed within each trial from that trial's runs, so that the trial effect and, where it cancels,
the model-within-trial effect drop out and, where it does not, are part of the contrast's own
variance; the trials' contrasts are independent, and their mean has a t interval with n - 1
degrees of freedom whatever the covariance of the runs within a trial (unequal variances across
optimizers, shared initial weights). On a balanced table the estimates equal the fixed-effect
contrasts of statsmodels' MixedLM with trial and model-within-trial random effects (a test checks
it). Only trials in which every cell of the unit finished enter (complete trials).

Error control across the primary questions, looks included: each of the P questions gets alpha / P
and each of its m contrasts alpha / (P m) (Bonferroni: any dependence). Each contrast's interval is
a repeated confidence interval (Jennison & Turnbull 2000, ch. 9) from a two-sided group-sequential
boundary with the Lan-DeMets O'Brien-Fleming spending function over the information fractions
n_trials / max_trials of the looks made so far; with one look (a fixed design) it is the plain
t interval at alpha / (P m). The chance that all intervals cover at every look is then at least
1 - alpha, and a false `difference` (an interval excluding 0 where the truth is 0) or a false
`equivalent` (an interval inside +-margin where the truth is outside) needs an interval that misses:
together they happen in at most alpha of studies, however the looks are used to stop.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.metrics import RANDOM

ALPHA = 0.05
MARGIN = 1.0  # AUBC points: the smallest difference that matters (analysis.margin)
VERDICTS = ("difference", "equivalent", "undecided")
MAIN = ("optimizer", "model")


# ---------------------------------------------------------------------------------------------- boundaries
def obf_spent(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending, alpha / 2 a side (the form of Jennison & Turnbull
    and of R's gsDesign `sfLDOF`): the two-sided alpha spent by information fraction t is
    2 * (2 - 2 Phi(z_{1 - alpha/4} / sqrt(t))), alpha at t = 1."""
    if t <= 0:
        return 0.0
    return float(4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / math.sqrt(min(t, 1.0))))


@lru_cache(maxsize=4096)
def boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Two-sided z boundaries c_1..c_K at the information fractions `fractions` (increasing, last
    <= 1) such that, for a Brownian motion observed there, P(first |Z_k| > c_k at look k) equals the
    alpha spent between looks k - 1 and k. Computed by the recursive integration of Armitage,
    McPherson & Rowe (1969) on the score scale S = Z sqrt(t), on a grid (no well-kept Python library
    computes group-sequential boundaries; tests check published values)."""
    out: list[float] = []
    grid = density = None
    previous_t, previous_spent = 0.0, 0.0
    for t in fractions:
        target = obf_spent(t, alpha) - previous_spent
        if grid is None:  # the first look: S ~ N(0, t)
            c = float(stats.norm.isf(max(target, 1e-300) / 2.0))
            half = c * math.sqrt(t)
            grid = np.linspace(-half, half, 1201)
            density = stats.norm.pdf(grid, scale=math.sqrt(t))
        else:
            sd = math.sqrt(t - previous_t)
            weights = _simpson(grid) * density

            def crossed(c: float) -> float:
                bound = c * math.sqrt(t)
                return float(weights @ (stats.norm.sf((bound - grid) / sd) + stats.norm.cdf((-bound - grid) / sd)))

            if target <= 1e-14:
                c = 40.0
            else:
                c = float(optimize.brentq(lambda c: crossed(c) - target, 1e-6, 40.0, xtol=1e-10))
            half = c * math.sqrt(t)
            new_grid = np.linspace(-half, half, 1201)
            density = (weights[None, :] * stats.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd).sum(1)
            grid = new_grid
        out.append(c)
        previous_t, previous_spent = t, obf_spent(t, alpha)
    return tuple(out)


def _simpson(x: np.ndarray) -> np.ndarray:
    """Simpson's weights on an even grid of an odd number of points."""
    h = x[1] - x[0]
    w = np.ones(len(x))
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * h / 3.0


def look_alpha(fractions: list[float], alpha: float) -> float:
    """The nominal two-sided level of the last look's interval (alpha itself for a single look at 1)."""
    fr = tuple(round(min(f, 1.0), 6) for f in fractions)
    if fr == (1.0,):
        return alpha
    return float(2.0 * stats.norm.sf(boundaries(fr, alpha)[-1]))


# ---------------------------------------------------------------------------------------------- contrasts
@dataclass(frozen=True)
class Contrast:
    """One contrast of a question: a name ("adam - sgd") and its weights over the unit's cells."""

    name: str
    weights: dict  # (model, optimizer, strategy) -> weight


def question_contrasts(question: str, cells: list[tuple]) -> list[Contrast]:
    """The contrasts a question is judged on, over the unit's cells (model, optimizer, strategy)."""
    models, optimizers, strategies = (sorted({c[i] for c in cells}) for i in range(3))
    out = []
    if question in MAIN:
        i = 0 if question == "model" else 1
        levels = models if i == 0 else optimizers
        for a, b in itertools.combinations(levels, 2):
            w = {c: (1.0 if c[i] == a else -1.0 if c[i] == b else 0.0) / (len(cells) / len(levels)) for c in cells}
            out.append(Contrast(f"{a} - {b}", {c: v for c, v in w.items() if v}))
    elif question == "model:optimizer":
        per = len(strategies)
        for (m1, m2), (o1, o2) in itertools.product(itertools.combinations(models, 2), itertools.combinations(optimizers, 2)):
            w: dict = {}
            for s in strategies:
                for m, o, v in ((m1, o1, 1), (m1, o2, -1), (m2, o1, -1), (m2, o2, 1)):
                    w[(m, o, s)] = w.get((m, o, s), 0.0) + v / per
            out.append(Contrast(f"({m1} - {m2}) x ({o1} - {o2})", w))
    elif question.endswith(" vs random"):
        s = question.removesuffix(" vs random")
        if s in strategies and RANDOM in strategies:
            per = len(models) * len(optimizers)
            w = {}
            for m, o in itertools.product(models, optimizers):
                w[(m, o, s)], w[(m, o, RANDOM)] = 1.0 / per, -1.0 / per
            out.append(Contrast(f"{s} - random", w))
    return out


def default_primary(strategies: list[str], n_models: int = 2, n_optimizers: int = 2) -> list[str]:
    """The study's default primary questions: the optimizer and model main effects, their
    interaction, and the gain over random of the sweep's first non-random strategy; each only where
    the grid can ask it (two levels or more of its factors)."""
    first = next((s for s in strategies if s != RANDOM), None)
    out = (
        ["optimizer"] * (n_optimizers > 1)
        + ["model"] * (n_models > 1)
        + ["model:optimizer"] * (n_models > 1 and n_optimizers > 1)
    )
    return out + ([f"{first} vs random"] if first and RANDOM in strategies else [])


def complete_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """trial x cell table of AUBC in points over the trials in which every cell has a finished run."""
    r = runs[runs["done"].astype(bool) & runs["aubc"].notna()]
    wide = r.pivot_table(index="trial", columns=["model", "optimizer", "strategy"], values="aubc", aggfunc="first")
    cells = runs[["model", "optimizer", "strategy"]].drop_duplicates()
    wide = wide.reindex(columns=pd.MultiIndex.from_frame(cells))
    return wide.dropna(axis=0, how="any") * 100.0


@dataclass
class Verdict:
    question: str
    verdict: str
    n_trials: int
    alpha: float  # the nominal two-sided level of each contrast's interval at this look
    contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)  # contrast, estimate, ci_low, ci_high, t, p_value
    pairs: str = ""  # the contrasts whose interval excludes 0, with their sign


def judge(question: str, wide: pd.DataFrame, n_questions: int, fractions: list[float], margin: float, alpha: float = ALPHA):
    """The verdict of one primary question from the complete trials' table (`complete_trials`)."""
    cells = list(wide.columns)
    contrasts = question_contrasts(question, cells)
    n = len(wide)
    if not contrasts or n < 2:
        return Verdict(question, "undecided", n, math.nan)
    level = look_alpha(fractions, alpha / (n_questions * len(contrasts)))
    q = stats.t.isf(level / 2.0, n - 1)
    where = {cell: i for i, cell in enumerate(cells)}
    weights = np.zeros((len(cells), len(contrasts)))
    for j, c in enumerate(contrasts):
        for cell, w in c.weights.items():
            weights[where[cell], j] = w
    values = wide.to_numpy(float) @ weights  # trials x contrasts: each trial's contrast
    est, se = values.mean(0), values.std(0, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, est / se, np.where(est != 0, np.inf, 0.0))
    p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), n - 1), np.nan)
    table = pd.DataFrame(
        {
            "contrast": [c.name for c in contrasts],
            "estimate": est,
            "ci_low": est - q * se,
            "ci_high": est + q * se,
            "t": t,
            "p_value": p,
        }
    )
    away = table[(table["ci_low"] > 0) | (table["ci_high"] < 0)]
    if len(away):
        pairs = "; ".join(f"{r.contrast} {'>' if r.estimate > 0 else '<'} 0 ({r.estimate:+.2f})" for r in away.itertuples())
        return Verdict(question, "difference", n, level, table, pairs)
    inside = bool(((table["ci_low"] > -margin) & (table["ci_high"] < margin)).all())
    return Verdict(question, "equivalent" if inside else "undecided", n, level, table)


def decide(runs: pd.DataFrame, primary: list[str], margin: float, fractions: list[float], alpha: float = ALPHA) -> list[Verdict]:
    """The verdicts of the primary questions of one unit (its runs), at the look whose information
    fractions (n_trials / max_trials of this and every earlier look) are `fractions`."""
    wide = complete_trials(runs)
    return [judge(q, wide, len(primary), fractions, margin, alpha) for q in primary]


# ---------------------------------------------------------------------------------------------- the report's use
PRIMARY_COLUMNS = ["primary", "verdict", "estimate", "ci_low", "ci_high", "n_trials", "alpha", "pairs", "decided_at"]


def settings(config: dict | None, strategies: list[str], n_models: int = 2, n_optimizers: int = 2) -> dict:
    """The study's primary questions, margin and waves, from the sweep's `analysis:` section
    (al_core.study.check) or the defaults (those the grid's models and optimizers can ask)."""
    section = (config or {}).get("analysis") or {}
    return {
        "primary": section.get("primary") or default_primary(strategies, n_models, n_optimizers),
        "margin": float(section.get("margin") or MARGIN),
        "sequential": section.get("sequential"),
        "max_device_hours": section.get("max_device_hours"),
    }


def fractions(looks: list[dict], wave: int, n_trials: int, sequential: dict | None) -> list[float]:
    """The information fractions of the looks up to this one: one look at 1 for a fixed design; for
    a sequential study the trials each earlier look saw, then this one's, over `max`."""
    if not sequential:
        return [1.0]
    top = float(sequential["max"])
    earlier = [lk["n_trials"] / top for lk in looks if lk["wave"] < wave and lk.get("n_trials")]
    return [*earlier, max(n_trials, 1) / top]


def primary_rows(runs: pd.DataFrame, unit: list[str], study: dict, looks: list[dict], wave: int) -> pd.DataFrame:
    """One questions.csv row per unit and primary question, with its verdict. A verdict reached at an
    earlier look stands (its interval covered with the study-wide guarantee)."""
    rows = []
    groups = runs.groupby(unit, observed=True, sort=True) if unit else [((), runs)]
    for key, r in groups:
        key = key if isinstance(key, tuple) else (key,)
        n_complete = len(complete_trials(r))
        fr = fractions(looks, wave, n_complete, study["sequential"])
        for v in decide(r, study["primary"], study["margin"], fr):
            earlier = _earlier(looks, wave, dict(zip(unit, key)), v.question)
            top = v.contrasts.iloc[v.contrasts["estimate"].abs().argmax()] if len(v.contrasts) else None
            rows.append(
                {
                    **dict(zip(unit, key)),
                    "question": v.question,
                    "test": _test_text(v.question, len(study["primary"]), study["sequential"]),
                    "n_tests": len(v.contrasts),
                    "statistic": float(top["t"]) if top is not None else math.nan,
                    "p_value": float(top["p_value"]) if top is not None else math.nan,
                    "significant": (earlier or {}).get("verdict", v.verdict) == "difference",
                    "primary": True,
                    "verdict": (earlier or {}).get("verdict", v.verdict),
                    "estimate": float(top["estimate"]) if top is not None else math.nan,
                    "ci_low": float(top["ci_low"]) if top is not None else math.nan,
                    "ci_high": float(top["ci_high"]) if top is not None else math.nan,
                    "n_trials": v.n_trials,
                    "alpha": v.alpha,
                    "pairs": (earlier or {}).get("pairs", v.pairs),
                    "decided_at": (earlier or {}).get("wave", wave if v.verdict != "undecided" else None),
                }
            )
    return pd.DataFrame(rows)


def _earlier(looks: list[dict], wave: int, unit: dict, question: str) -> dict | None:
    """The first decisive verdict of `question` at a look before `wave`, with that wave."""
    for lk in sorted(looks, key=lambda x: x["wave"]):
        if lk["wave"] >= wave:
            break
        for row in lk.get("verdicts", []):
            same = row.get("question") == question and all(str(row.get(k)) == str(v) for k, v in unit.items())
            if same and row.get("verdict") in ("difference", "equivalent"):
                return {"verdict": row["verdict"], "pairs": row.get("pairs", ""), "wave": lk["wave"]}
    return None


def _test_text(question: str, n_primary: int, sequential: dict | None) -> str:
    what = {
        "optimizer": "main effect of the optimizer: every pair, averaged over model x strategy",
        "model": "main effect of the model: every pair, averaged over optimizer x strategy",
        "model:optimizer": "model x optimizer interaction: every difference of differences, averaged over strategy",
    }.get(question, f"{question.removesuffix(' vs random')}'s gain over random, averaged over model x optimizer")
    looks = "repeated CIs, O'Brien-Fleming alpha spending over the waves" if sequential else "one look"
    return f"{what}; per-trial contrasts of AUBC (points), t intervals; Bonferroni over {n_primary} primary questions; {looks}"


def secondary_verdict(family: pd.DataFrame | None, significant: bool, margin: float) -> str:
    """A secondary (exploratory) question's verdict under its own per-question control: difference
    when its Holm family claims one; equivalent when every test's Bonferroni-adjusted interval lies
    inside +-margin; undecided otherwise (an F-test has no interval: never equivalent)."""
    if significant:
        return "difference"
    if family is None or family.empty or "diff_sd" not in family:
        return "undecided"
    f = family.dropna(subset=["diff_sd"])
    f = f[f["n_pairs"] >= 2]
    if f.empty or len(f) < len(family):
        return "undecided"
    q = stats.t.isf(ALPHA / (2 * len(f)), f["n_pairs"] - 1)
    half = q * f["diff_sd"] / np.sqrt(f["n_pairs"]) * 100
    mean = f["diff_mean"] * 100
    return "equivalent" if bool(((mean - half > -margin) & (mean + half < margin)).all()) else "undecided"


def with_verdicts(questions: pd.DataFrame, families: dict, unit: list[str], primary: pd.DataFrame, margin: float) -> pd.DataFrame:
    """questions.csv: the primary questions' rows (their own analysis) in place of the per-cell
    families of the same name, which stay in optimizers.csv etc.; every other row secondary, with
    its verdict under its own control."""
    q = questions.copy()
    verdicts = []
    for row in q.to_dict("records"):
        name = row["question"]
        family = families.get(name if name in families else "gains")
        if family is not None and unit:
            for k in unit:
                family = family[family[k].astype(str) == str(row[k])]
        if family is not None and name.endswith(" vs random") and "strategy" in family:
            family = family[family["strategy"] == name.removesuffix(" vs random")]
        verdicts.append(secondary_verdict(family, bool(row["significant"]), margin))
    q = q.assign(primary=False, verdict=verdicts)
    if len(primary):
        names = set(primary["question"])
        q = q[~q["question"].isin(names)]
        q = pd.concat([primary, q], ignore_index=True)
    for col in PRIMARY_COLUMNS:
        if col not in q:
            q[col] = None
    q["primary"] = q["primary"].astype(bool)
    q["significant"] = q["significant"].astype(bool)
    return q
