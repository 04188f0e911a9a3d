"""The report's headline: the study's questions answered in one place, from the runs table.

- a model x optimizer grid of AUBC and final accuracy per strategy (mean ± 95% CI, n);
- the claims of each question (analysis.questions: optimizers.csv, models.csv, gains.csv with
  `significant`, questions.csv), each with its 95% CI and Cohen's d_z;
- a two-way ANOVA of AUBC, model x optimizer, trials as replicates: anova.csv (descriptive).

Only finished runs (DONE) count; groups with fewer than MIN_TRIALS runs are flagged.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from analysis.decide import PRIMARY_COLUMNS
from analysis.metrics import ci95, holm, rows_matching
from analysis.planning import display_power
from analysis.questions import ALPHA, finished, gains, pairwise
from analysis.render import mean_pm

MIN_TRIALS = 3  # below this a group's CI is not shown and the group is flagged
FLAG = "†"


def anova(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> pd.DataFrame:
    """anova.csv: per dataset x strategy (and extra axes), the type-II two-way ANOVA of `metric`
    (statsmodels `anova_lm` on `aubc ~ C(model) * C(optimizer)`), trials as replicates. A group
    gets no rows when it has fewer than 2 models or optimizers or no residual degrees of freedom."""
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    by = [k for k in keys if k not in ("model", "optimizer")]
    cols = [*by, "term", "df", "sum_sq", "F", "p_value"]
    names = {"C(model)": "model", "C(optimizer)": "optimizer", "C(model):C(optimizer)": "model:optimizer", "Residual": "Residual"}
    out = []
    for group, g in finished(runs).groupby(by, observed=True, sort=True):
        cells = g.groupby(["model", "optimizer"], observed=True).size()
        if g["model"].nunique() < 2 or g["optimizer"].nunique() < 2 or len(g) - len(cells) < 1:
            continue
        frame = pd.DataFrame(
            {
                "aubc": g[metric].to_numpy(float),
                "model": g["model"].astype(str).to_numpy(),
                "optimizer": g["optimizer"].astype(str).to_numpy(),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = anova_lm(ols("aubc ~ C(model) * C(optimizer)", data=frame).fit(), typ=2)
        for term, row in table.iterrows():
            out.append(
                [*group, names.get(term, term), float(row["df"]), float(row["sum_sq"]), float(row["F"]), float(row["PR(>F)"])]
            )
    return pd.DataFrame(out, columns=cols)


def grid(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: n finished runs, AUBC and final accuracy (mean, 95% CI), runs reaching the target;
    `few` marks groups with fewer than MIN_TRIALS finished runs (their CI is NaN here)."""
    r = finished(runs)
    cols = [*keys, "n", "aubc_mean", "aubc_ci95", "final_acc_mean", "final_acc_ci95", "n_reached", "few"]
    if r.empty:
        return pd.DataFrame(columns=cols)
    g = r.groupby(keys, observed=True, sort=True)
    out = g.agg(
        n=("run_id", "size"),
        aubc_mean=("aubc", "mean"),
        aubc_std=("aubc", "std"),
        final_acc_mean=("final_acc", "mean"),
        final_acc_std=("final_acc", "std"),
        n_reached=("labels_to_target", "count"),
    ).reset_index()
    out["few"] = out["n"] < MIN_TRIALS
    out["aubc_ci95"] = np.where(out["few"], np.nan, ci95(out["aubc_std"], out["n"]))
    out["final_acc_ci95"] = np.where(out["few"], np.nan, ci95(out["final_acc_std"], out["n"]))
    return out[cols]


# ---------------------------------------------------------------------------------------------
# Text
def _pct(m: float, ci: float = math.nan, sign: bool = False) -> str:
    if not np.isfinite(m):
        return "–"
    text = f"{m * 100:+.2f}" if sign else f"{m * 100:.2f}"
    return f"{text} ± {ci * 100:.2f}" if np.isfinite(ci) else text


def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _dz(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.2f}"


def _facets(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """The key columns besides model, optimizer and strategy that take several values."""
    return [k for k in keys if k not in ("model", "optimizer", "strategy") and runs[k].nunique() > 1]


def _tag(row, columns: list[str]) -> str:
    return " · ".join(str(row[c]) for c in columns)


def grid_tables(g: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """One display table per dataset x strategy (x extra axes): rows models, columns optimizers,
    cells 'AUBC ± CI / final ± CI (n)'; a flagged cell for groups of fewer than MIN_TRIALS runs."""
    by = [k for k in keys if k not in ("model", "optimizer")]
    out = []
    if g.empty:
        return out
    shown_by = [k for k in by if g[k].nunique() > 1] or ["strategy"]
    for group, t in g.groupby(by, observed=True, sort=True):
        cell = (
            pd.Series(mean_pm(t["aubc_mean"], t["aubc_ci95"]), index=t.index)
            + " / "
            + pd.Series(mean_pm(t["final_acc_mean"], t["final_acc_ci95"]), index=t.index)
            + " (n="
            + t["n"].astype(str)
            + np.where(t["few"], f" {FLAG}", "")
            + ")"
        )
        table = t.assign(cell=cell).pivot(index="model", columns="optimizer", values="cell").fillna("–")
        table = table.reset_index()
        table.columns = [str(c) for c in table.columns]
        out.append((_tag(dict(zip(by, group)), shown_by), table))
    return out


def claim_text(r, factor: str | None, within: list[str]) -> str:
    """One significant row as a claim: who is higher, where, the difference with its 95% CI,
    Cohen's d_z, n and the question's Holm-adjusted p. `factor` None: a gain over random."""
    sign = 1 if r["diff_mean"] > 0 else -1
    if factor is None:
        head = f"{r['strategy']} {'>' if sign > 0 else '<'} random"
    else:
        hi, lo = (r[f"{factor}_a"], r[f"{factor}_b"]) if sign > 0 else (r[f"{factor}_b"], r[f"{factor}_a"])
        head = f"{hi} > {lo}"
    shown = sign if factor is not None else 1
    return (
        f"{head} ({_tag(r, within)}): {_pct(shown * r['diff_mean'], r['diff_ci95'], sign=True)} points, "
        f"d_z = {shown * r['d_z']:.2f}, n={int(r['n_pairs'])}, p_family {_p(r['p_family'])}"
    )


def best_lines(pairs: pd.DataFrame, g: pd.DataFrame, keys: list[str], factor: str) -> list[str]:
    """Per group (e.g. strategy x model for factor optimizer): the best level by mean AUBC and its
    paired tests against every other level; 'significant' only where the question claims it."""
    within = [k for k in keys if k != factor]
    a_col, b_col = f"{factor}_a", f"{factor}_b"
    facet = [k for k in within if k in g and g[k].nunique() > 1]
    lines = []
    for group, t in g.groupby(within, observed=True, sort=True):
        if t[factor].nunique() < 2:
            continue
        best = t.sort_values(["aubc_mean", factor], ascending=[False, True]).iloc[0]
        lvl = best[factor]
        key = dict(zip(within, group))
        mine = rows_matching(pairs, key)
        mine = mine[(mine[a_col] == lvl) | (mine[b_col] == lvl)]
        parts = []
        for _, p in mine.iterrows():
            other = p[b_col] if p[a_col] == lvl else p[a_col]
            sign = 1 if p[a_col] == lvl else -1
            few = f" {FLAG}" if p["n_pairs"] < MIN_TRIALS else ""
            ci = p["diff_ci95"] if not few else math.nan
            parts.append(
                f"vs {other} {_pct(sign * p['diff_mean'], ci, sign=True)} points "
                f"(n={int(p['n_pairs'])}{few}, d_z {_dz(sign * p['d_z'])}, p_family {_p(p['p_family'])}"
                f"{', significant' if p['significant'] else ''})"
            )
        label = _tag(key, facet)
        lines.append(
            f"{label}: {lvl} (AUBC {_pct(best['aubc_mean'], best['aubc_ci95'])}%)" + ("; " + "; ".join(parts) if parts else "")
        )
    return lines


def anova_reading(a: pd.DataFrame, by_values: dict) -> str:
    """One sentence reading a group's ANOVA table: descriptive F and p, no verdict (the claims
    come from questions.csv)."""
    terms = rows_matching(a, by_values).set_index("term")

    def part(term: str) -> str:
        if term not in terms.index or not np.isfinite(terms.loc[term, "p_value"]):
            return "not testable"
        return f"F = {terms.loc[term, 'F']:.2f}, p = {_p(terms.loc[term, 'p_value'])}"

    return (
        f"descriptive (the claims are in questions.csv): interaction {part('model:optimizer')}; "
        f"optimizer {part('optimizer')}; model {part('model')}."
    )


PROCEDURE = (
    "How claims are made: each question (optimizer, model, model x optimizer, each strategy vs random) is one "
    "family per dataset (and precision or other facet). Its tests (paired t-tests of AUBC by trial; for the "
    "interaction an F-test with trial as a block, per strategy) are Holm-corrected together, so the chance that "
    f"a question claims any difference that is not there is at most {ALPHA:.0%}. Only rows marked significant "
    "are claimed; p_holm (Holm within one narrow group) and the ANOVA table are descriptive."
)


def headline_blocks(tables) -> list[tuple]:
    """The report's first section (and summary.md): blocks in the form of analysis.render."""
    keys, g = tables.keys, tables.grid
    blocks: list[tuple] = [("h2", "Headline")]
    if g.empty:
        return blocks + [("p", "No run has finished yet: nothing to compare.")]
    blocks.append(
        (
            "p",
            "AUBC = area under the accuracy-vs-labels curve, normalised (%). Finished runs only; "
            "± is the 95% CI over trials (Student's t); n = trials; d_z = mean paired difference / its SD; "
            f"{FLAG} = fewer than {MIN_TRIALS} trials, CI not shown. " + PROCEDURE,
        )
    )
    if "precision" in keys:
        blocks.append(("p", PRECISION_NOTE))
    blocks += verdict_blocks(tables)
    blocks.append(("ul", answer_lines(tables)))
    blocks += question_blocks(tables)
    for label, table in grid_tables(g, keys):
        blocks += [("p", f"{label}: AUBC / final accuracy (%), model x optimizer."), ("table", table)]
    for frame, factor, text in (
        (tables.optimizers, "optimizer", "Best optimizer per model (by mean AUBC), against each other optimizer:"),
        (tables.models, "model", "Best model per optimizer (by mean AUBC), against each other model:"),
    ):
        lines = best_lines(frame, g, keys, factor)
        if lines:
            blocks += [("p", text), ("ul", lines)]
    return blocks + anova_blocks(tables) + gain_blocks(tables)


def verdict_blocks(tables) -> list[tuple]:
    """The primary questions' verdicts (analysis.decide): the report's first screen."""
    q = tables.questions
    if "primary" not in q or not q["primary"].astype(bool).any():
        return []
    prim = q[q["primary"].astype(bool)]
    study = tables.study
    unit = [k for k in tables.keys if k not in ("model", "optimizer", "strategy") and k in prim and prim[k].nunique() > 1]
    lines = []
    for r in prim.to_dict("records"):
        where = "".join(f"{r[k]} " for k in unit)
        text = f"{where}{r['question']}: {str(r['verdict']).upper()}"
        if r["verdict"] == "difference" and r.get("pairs"):
            text += f": {r['pairs']}"
        if np.isfinite(float(r["estimate"])):
            text += (
                f" (largest contrast {float(r['estimate']):+.2f} points, CI [{float(r['ci_low']):.2f}, {float(r['ci_high']):.2f}]"
            )
            text += f", {int(r['n_trials'])} complete trials"
            text += f", decided at wave {int(r['decided_at'])})" if r.get("decided_at") and study["sequential"] else ")"
        else:
            text += f" (not testable: {int(r['n_trials'] or 0)} complete trials)"
        lines.append(text)
    seq = study["sequential"]
    control = f"Bonferroni over the {len(study['primary'])} questions and their contrasts" + (
        f"; O'Brien-Fleming alpha spending over waves of {seq['first']} + {seq['step']} trials, at most {seq['max']}"
        if seq
        else ""
    )
    return [
        (
            "p",
            f"Verdicts of the primary questions (analysis.primary), AUBC in points, margin ±{study['margin']:g}: difference = an "
            "interval excludes 0; equivalent = every interval inside ±margin; undecided = neither. The chance of any "
            f"false difference or false equivalence across them all is at most 5% ({control}).",
        ),
        ("ul", lines),
    ]


PRECISION_NOTE = (
    "The runs trained in more than one precision (fp32, bf16): precision is an analysis key, so runs of "
    "different precisions are never paired or pooled; each precision is its own family of questions."
)


def question_blocks(tables) -> list[tuple]:
    """The questions table (questions.csv) and, when computed, the power table (power.csv)."""
    q = tables.questions
    q = q[~q["primary"].astype(bool)] if "primary" in q else q
    blocks: list[tuple] = []
    if len(q):
        unit = [
            k for k in q.columns if k not in ("question", "test", "n_tests", "statistic", "p_value", "significant", "verdict")
        ]
        unit = [k for k in unit if k not in PRIMARY_COLUMNS]
        shown = pd.DataFrame(
            {
                **{k: q[k].astype(str) for k in unit},
                "question": q["question"].astype(str),
                "test": q["test"].astype(str),
                "statistic": [f"{v:.2f}" if np.isfinite(v) else "–" for v in q["statistic"].astype(float)],
                "p_value": [_p(v) for v in q["p_value"].astype(float)],
                "significant": np.where(q["significant"].astype(bool), "yes", "no"),
                "verdict": q["verdict"].astype(str) if "verdict" in q else "",
            }
        )
        blocks += [
            (
                "p",
                "Secondary questions (questions.csv, exploratory): each question is its own family at 5% "
                "(p is the family's Holm-adjusted p); the study-wide control of the primary questions does not "
                "cover them: read them as leads for the next study.",
            ),
            ("table", shown),
        ]
    power = getattr(tables, "power", None)
    if power is not None and len(power):
        blocks += [("h2", "Planning trials"), *display_power(power)]
    return blocks


def anova_blocks(tables) -> list[tuple]:
    a, keys = tables.anova, tables.keys
    if a.empty:
        return [("p", "Two-way ANOVA: not computed (it needs 2+ models, 2+ optimizers and replicated cells of finished runs).")]
    blocks: list[tuple] = []
    by = [k for k in keys if k not in ("model", "optimizer")]
    shown_by = [k for k in by if a[k].nunique() > 1] or ["strategy"]
    for group, t in a.groupby(by, observed=True, sort=True):
        values = dict(zip(by, group))
        disp = pd.DataFrame(
            {
                "term": t["term"],
                "df": [f"{v:g}" for v in t["df"]],
                "sum of squares": [f"{v:.3g}" for v in t["sum_sq"]],
                "F": ["–" if not np.isfinite(v) else f"{v:.2f}" for v in t["F"]],
                "p": [_p(v) for v in t["p_value"]],
            }
        )
        text = f"Two-way ANOVA of AUBC, {_tag(values, shown_by)} (type II, aubc ~ C(model) * C(optimizer)): "
        blocks += [("p", text + anova_reading(a, values)), ("table", disp)]
    return blocks


def gain_blocks(tables) -> list[tuple]:
    gn, keys = tables.gains, tables.keys
    differ = getattr(tables, "gains_tuned_differ", 0)
    note = (
        f" In {differ} pairs the runs chose different tuned hyper-parameters (each tuned on its own labelled set): "
        "those gains compare pipelines, strategy + its tuning."
        if differ
        else ""
    )
    if gn.empty:
        return [("p", "Gain over random: no pairs." + note)] if note else []
    disp = pd.DataFrame(
        {
            **{k: gn[k].astype(str) for k in keys if k == "strategy" or gn[k].nunique() > 1},
            "pairs": gn["n_pairs"].astype(str) + np.where(gn["n_pairs"] < MIN_TRIALS, f" {FLAG}", ""),
            "AUBC gain (points)": [
                _pct(m, c if n >= MIN_TRIALS else math.nan, sign=True)
                for m, c, n in zip(gn["diff_mean"], gn["diff_ci95"], gn["n_pairs"])
            ],
            "d_z": ["–" if not np.isfinite(v) else f"{v:.2f}" for v in gn["d_z"]],
            "p": [_p(v) for v in gn["p_value"]],
            "p_family": [_p(v) for v in gn["p_family"]],
            "significant": np.where(gn["significant"], "yes", "no"),
        }
    )
    text = "Gain in AUBC over random per model x optimizer, paired by trial (Holm over the question '<strategy> vs random')."
    return [("p", text + note), ("table", disp)]


def pair_claims(frame: pd.DataFrame, factor: str, facet: list[str], limit: int = 6) -> tuple[int, int, list[str]]:
    """(claimed, tested, claim texts) of a pair table, claims from `significant` only."""
    if frame.empty:
        return 0, 0, []
    within = [k for k in [*facet, "strategy", "model", "optimizer"] if k != factor]
    sig = frame[frame["significant"]]
    items = [claim_text(r, factor, within) for _, r in sig.iterrows()]
    shown = items[:limit] + ([f"{len(items) - limit} more"] if len(items) > limit else [])
    return len(sig), int(frame["p_value"].notna().sum()), shown


def answer_lines(tables) -> list[str]:
    """The headline answers, one sentence each: best group per strategy (descriptive), then each
    question's claims (significant rows only, with 95% CI and d_z) or 'no evidence of ...'."""
    facet = _facets(tables.grid, tables.keys) if len(tables.grid) else []
    out = best_group_lines(tables.grid, facet)
    for name, frame, factor in (("optimizers", tables.optimizers, "optimizer"), ("models", tables.models, "model")):
        out += pair_answer(frame, name, factor, facet)
    return out + interaction_lines(tables, facet) + gain_lines(tables, facet)


def best_group_lines(g: pd.DataFrame, facet: list[str]) -> list[str]:
    out = []
    for _, t in g.groupby([*facet, "strategy"], observed=True, sort=True):
        best = t.sort_values(["aubc_mean", "model", "optimizer"], ascending=[False, True, True]).iloc[0]
        out.append(
            f"{_tag(best, [*facet, 'strategy'])}: highest mean AUBC {best['model']} + {best['optimizer']}, "
            f"{_pct(best['aubc_mean'], best['aubc_ci95'])}%, final accuracy {_pct(best['final_acc_mean'], best['final_acc_ci95'])}% "
            f"(n={int(best['n'])}{' ' + FLAG if best['few'] else ''}; descriptive)."
        )
    return out


def pair_answer(frame: pd.DataFrame, name: str, factor: str, facet: list[str]) -> list[str]:
    """The claims of the optimizer or model question, or that there is no evidence of any."""
    n_sig, tested, shown = pair_claims(frame, factor, facet)
    if not tested:
        return []
    if n_sig:
        return [
            f"Differences between {name} in AUBC ({n_sig} of {tested} pairs, Holm over the question): " + "; ".join(shown) + "."
        ]
    return [f"No evidence of a difference between {name} in AUBC ({tested} paired tests, Holm over the question)."]


def interaction_lines(tables, facet: list[str]) -> list[str]:
    inter = getattr(tables, "interaction", pd.DataFrame())
    if inter.empty:
        return []
    sig = inter[inter["significant"]]
    if sig.empty:
        return [
            f"No evidence that the optimizer's effect depends on the architecture (model x optimizer interaction, "
            f"trial as a block, {len(inter)} tests, Holm)."
        ]
    where = ", ".join(
        f"{_tag(r, [*facet, 'strategy'])} (F = {r['F']:.2f}, p_family {_p(r['p_family'])})" for _, r in sig.iterrows()
    )
    return [
        f"The optimizer's effect depends on the architecture (model x optimizer interaction, trial as a block, Holm) for {where}."
    ]


def gain_lines(tables, facet: list[str]) -> list[str]:
    out = []
    for _, t in tables.gains.groupby([*facet, "strategy"], observed=True, sort=True):
        sig = t[t["significant"]]
        within = [*facet, "model", "optimizer"]
        head = f"{_tag(t.iloc[0], [*facet, 'strategy'])} vs random (AUBC, paired by trial, Holm over {int(t['p_value'].notna().sum())} tests): "
        if sig.empty:
            out.append(
                head + f"no evidence of a difference; mean gain {_pct(t['diff_mean'].mean(), sign=True)} points (descriptive)."
            )
        else:
            items = [claim_text(r, None, within) for _, r in sig.iterrows()]
            out.append(head + "; ".join(items[:6]) + (f"; {len(items) - 6} more" if len(items) > 6 else "") + ".")
    return out


def summary_lines(tables) -> list[str]:
    """The terminal summary, five lines with one non-random strategy: completeness and cost; the
    best model + optimizer per strategy (descriptive); the optimizer question; the interaction and
    model questions; each strategy against random. Claims as in the headline: significant rows only."""
    g, keys = tables.grid, tables.keys
    lines = [completeness_line(tables) + "; " + cost_line(tables).split(";")[0]]
    if g.empty:
        return lines + ["no finished run yet: nothing to compare"]
    facet = _facets(g, keys)
    best = [
        f"{_tag(b, [*facet, 'strategy'])} {b['model']} + {b['optimizer']} {_pct(b['aubc_mean'], b['aubc_ci95'])}% "
        f"(n={int(b['n'])}{' ' + FLAG if b['few'] else ''})"
        for _, t in g.groupby([*facet, "strategy"], observed=True, sort=True)
        for b in [t.sort_values(["aubc_mean", "model", "optimizer"], ascending=[False, True, True]).iloc[0]]
    ]
    lines.append("best by AUBC (descriptive): " + "; ".join(best))
    lines += pair_answer(tables.optimizers, "optimizers", "optimizer", facet) or ["optimizers: no pairs to test"]
    rest = interaction_lines(tables, facet) + pair_answer(tables.models, "models", "model", facet)
    lines.append(" ".join(rest) if rest else "interaction and models: nothing to test")
    lines += gain_lines(tables, facet)
    if tables.gains.empty and "random" in set(g["strategy"]) and g["strategy"].nunique() > 1:
        lines.append("no finished non-random run has a finished random run of the same trial to pair with yet")
    return lines + verdict_summary(tables)


def verdict_summary(tables) -> list[str]:
    """The terminal's line of the primary questions' verdicts (none when the table has no primary rows)."""
    q = getattr(tables, "questions", None)
    if q is None or "primary" not in q or not q["primary"].astype(bool).any():
        return []
    prim = q[q["primary"].astype(bool)]
    return ["verdicts (study-wide 5%): " + "; ".join(f"{r['question']} {r['verdict']}" for r in prim.to_dict("records"))]


def completeness_line(tables) -> str:
    counts = tables.status_counts()
    text = f"{counts['done']} of {counts['total']} runs done, {counts['in progress']} in progress"
    if tables.data.expected_known:
        text += f", {counts['missing']} missing"
    if counts["left out"]:
        text += f", {counts['left out']} left out (see Runs left out)"
    included = tables.data.left_out["included"].sum() if len(tables.data.left_out) else 0
    if included:
        text += f", {int(included)} of another config included (--include-mismatched)"
    return (
        text
        + f"; {counts['cycles_done']} cycles finished"
        + (f" of {counts['cycles_expected']}" if counts["cycles_expected"] else "")
    )


def cost_line(tables) -> str:
    g = tables.groups
    text = f"compute so far: {g['gpu_hours'].sum():.2f} GPU-hours and {g['cpu_hours'].sum():.2f} CPU-hours (train + select + eval + tune)"
    timed = g.dropna(subset=["train_time_s_mean"])
    if len(timed):
        top = timed.loc[timed["train_time_s_mean"].idxmax()]
        text += (
            f"; longest mean train time per run {top['model']} + {top['optimizer']} ({top['strategy']}), "
            f"{top['train_time_s_mean'] / 3600:.3f} h"
        )
    return text


__all__ = ["ALPHA", "FLAG", "MIN_TRIALS", "anova", "gains", "grid", "headline_blocks", "holm", "pairwise", "summary_lines"]
