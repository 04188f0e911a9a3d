"""The report's headline: the study's questions answered in one place, from the runs table.

- a model x optimizer grid of AUBC and final accuracy per strategy (mean ± 95% CI, n);
- pairwise paired tests of AUBC between optimizers (per model) and between models (per
  optimizer), Holm-corrected: optimizers.csv and models.csv;
- a two-way ANOVA of AUBC, model x optimizer, trials as replicates: anova.csv;
- each strategy's AUBC gain over random per model x optimizer, paired by trial, Holm: gains.csv.

Only finished runs (DONE) count; groups with fewer than MIN_TRIALS runs are flagged. Statistics
come from scipy (ttest_rel) and statsmodels (multipletests, anova_lm).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis.metrics import RANDOM, ci95

ALPHA = 0.05
MIN_TRIALS = 3  # below this a group's CI is not shown and the group is flagged
FLAG = "†"


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' multipletests); NaN stays NaN and is not counted."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


def add_holm(table: pd.DataFrame, by: list[str], col: str = "p_value", out: str = "p_holm") -> pd.DataFrame:
    """`table` with an `out` column: Holm over the rows of each group of `by`."""
    table = table.copy()
    table[out] = np.nan
    if table.empty:
        return table
    for _, idx in table.groupby(by, observed=True, sort=False).groups.items():
        table.loc[idx, out] = holm(table.loc[idx, col])
    return table


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose AUBC counts: done, with an AUBC."""
    return runs[runs["done"].astype(bool) & runs["aubc"].notna()]


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[int, float, float, float]:
    """n, mean(a - b), 95% CI half-width, two-sided paired t-test p (NaN when undefined)."""
    n = len(a)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    d = a - b
    mean = float(d.mean())
    if n < 2:
        return n, mean, math.nan, math.nan
    half = float(ci95(d.std(ddof=1), n))
    if np.ptp(d) <= 1e-12:
        return n, mean, half, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.ttest_rel(a, b).pvalue)
    return n, mean, half, p


def pairwise(runs: pd.DataFrame, keys: list[str], factor: str, metric: str = "aubc") -> pd.DataFrame:
    """Every pair a < b (alphabetical) of `factor`'s values within each group of the other keys:
    diff = metric(a) - metric(b) of finished runs paired by trial; Holm over the pairs of a group.

    factor="optimizer" gives optimizers.csv (per dataset, strategy, model), "model" models.csv.
    """
    within = [k for k in keys if k != factor]
    a_col, b_col = f"{factor}_a", f"{factor}_b"
    cols = [*within, a_col, b_col, "n_pairs", "mean_a", "mean_b", "diff_mean", "diff_ci95", "p_value", "p_holm"]
    r = finished(runs)
    rows = []
    for group, g in r.groupby(within, observed=True, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        wide = g.pivot_table(index="trial", columns=factor, values=metric, aggfunc="first")
        for a, b in itertools.combinations(sorted(wide.columns, key=str), 2):
            both = wide[[a, b]].dropna()
            n, mean, half, p = _paired(both[a].to_numpy(float), both[b].to_numpy(float))
            rows.append([*group, a, b, n, wide[a].mean(), wide[b].mean(), mean, half, p])
    out = pd.DataFrame(rows, columns=cols[:-1])
    return add_holm(out, within)[cols] if len(out) else pd.DataFrame(columns=cols)


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
        group = group if isinstance(group, tuple) else (group,)
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


def gains(runs: pd.DataFrame, keys: list[str], metric: str = "aubc") -> pd.DataFrame:
    """gains.csv: per non-random strategy and model x optimizer (and dataset, extra axes), the
    paired-by-trial gain metric(strategy) - metric(random) of finished runs; Holm over the groups of
    one dataset x strategy (x extra axes)."""
    pair_on = [k for k in keys if k != "strategy"]
    cols = [*keys, "n_pairs", "diff_mean", "diff_ci95", "p_value", "p_holm"]
    r = finished(runs)
    rnd = r[r["strategy"] == RANDOM][[*pair_on, "trial", metric]]
    other = r[r["strategy"] != RANDOM][[*keys, "trial", metric]]
    pairs = other.merge(rnd, on=[*pair_on, "trial"], suffixes=("", "_random"))
    rows = []
    for group, g in pairs.groupby(keys, observed=True, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        rows.append([*group, *_paired(g[metric].to_numpy(float), g[f"{metric}_random"].to_numpy(float))])
    out = pd.DataFrame(rows, columns=cols[:-1])
    facet = [k for k in keys if k not in ("model", "optimizer")]
    return add_holm(out, facet)[cols] if len(out) else pd.DataFrame(columns=cols)


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


def _facets(runs: pd.DataFrame, keys: list[str]) -> list[str]:
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
            pd.Series(_pct_list(t["aubc_mean"], t["aubc_ci95"]), index=t.index)
            + " / "
            + pd.Series(_pct_list(t["final_acc_mean"], t["final_acc_ci95"]), index=t.index)
            + " (n="
            + t["n"].astype(str)
            + np.where(t["few"], f" {FLAG}", "")
            + ")"
        )
        table = t.assign(cell=cell).pivot(index="model", columns="optimizer", values="cell").fillna("–")
        table = table.reset_index()
        table.columns = [str(c) for c in table.columns]
        out.append((_tag(dict(zip(by, group if isinstance(group, tuple) else (group,))), shown_by), table))
    return out


def _pct_list(mean, ci) -> list[str]:
    return [_pct(m, c) for m, c in zip(np.asarray(mean, float), np.asarray(ci, float))]


def best_lines(pairs: pd.DataFrame, g: pd.DataFrame, keys: list[str], factor: str) -> list[str]:
    """Per group (e.g. strategy x model for factor optimizer): the best level by mean AUBC and its
    Holm-corrected paired tests against every other level."""
    within = [k for k in keys if k != factor]
    a_col, b_col = f"{factor}_a", f"{factor}_b"
    facet = [k for k in within if k in g and g[k].nunique() > 1]
    lines = []
    for group, t in g.groupby(within, observed=True, sort=True):
        if t[factor].nunique() < 2:
            continue
        best = t.sort_values(["aubc_mean", factor], ascending=[False, True]).iloc[0]
        lvl = best[factor]
        key = dict(zip(within, group if isinstance(group, tuple) else (group,)))
        mine = pairs
        for k, v in key.items():
            mine = mine[mine[k] == v]
        mine = mine[(mine[a_col] == lvl) | (mine[b_col] == lvl)]
        parts = []
        for _, p in mine.iterrows():
            other = p[b_col] if p[a_col] == lvl else p[a_col]
            sign = 1 if p[a_col] == lvl else -1
            sig = np.isfinite(p["p_holm"]) and p["p_holm"] < ALPHA
            few = f" {FLAG}" if p["n_pairs"] < MIN_TRIALS else ""
            ci = p["diff_ci95"] if not few else math.nan
            parts.append(
                f"vs {other} {_pct(sign * p['diff_mean'], ci, sign=True)} points "
                f"(n={int(p['n_pairs'])}{few}, p_holm {_p(p['p_holm'])}{', significant' if sig else ''})"
            )
        label = _tag(key, facet)
        lines.append(
            f"{label}: {lvl} (AUBC {_pct(best['aubc_mean'], best['aubc_ci95'])}%)" + ("; " + "; ".join(parts) if parts else "")
        )
    return lines


def anova_reading(a: pd.DataFrame, by_values: dict) -> str:
    """One sentence reading a group's ANOVA table."""
    t = a
    for k, v in by_values.items():
        t = t[t[k] == v]
    terms = t.set_index("term")

    def part(term: str) -> str:
        if term not in terms.index or not np.isfinite(terms.loc[term, "p_value"]):
            return "not testable"
        p = terms.loc[term, "p_value"]
        return f"F = {terms.loc[term, 'F']:.2f}, p = {_p(p)}, {'significant' if p < ALPHA else 'not significant'}"

    inter = terms.loc["model:optimizer", "p_value"] if "model:optimizer" in terms.index else math.nan
    if np.isfinite(inter) and inter < ALPHA:
        lead = "the optimizer's effect on AUBC depends on the architecture"
    elif np.isfinite(inter):
        lead = "no evidence that the optimizer's effect on AUBC depends on the architecture"
    else:
        lead = "the interaction could not be tested"
    return f"{lead} (interaction: {part('model:optimizer')}); optimizer: {part('optimizer')}; model: {part('model')}."


def headline_blocks(tables) -> list[tuple]:
    """The report's first section (and summary.md): blocks in the form of analysis.render."""
    keys = tables.keys
    g, gn = tables.grid, tables.gains
    blocks: list[tuple] = [("h2", "Headline")]
    if g.empty:
        return blocks + [("p", "No run has finished yet: nothing to compare.")]
    blocks.append(
        (
            "p",
            "AUBC = area under the accuracy-vs-labels curve, normalised (%). Finished runs only; "
            "± is the 95% CI over trials (Student's t); n = trials; "
            f"{FLAG} = fewer than {MIN_TRIALS} trials, CI not shown. Paired tests by trial, "
            "two-sided; p_holm: Holm-corrected within each family shown.",
        )
    )
    answers = answer_lines(tables)
    blocks.append(("ul", answers))
    for label, table in grid_tables(g, keys):
        blocks += [("p", f"{label}: AUBC / final accuracy (%), model x optimizer."), ("table", table)]
    opt_lines = best_lines(tables.optimizers, g, keys, "optimizer")
    if opt_lines:
        blocks += [
            ("p", "Best optimizer per model (by mean AUBC), against each other optimizer (Holm over the pairs of one model):"),
            ("ul", opt_lines),
        ]
    mod_lines = best_lines(tables.models, g, keys, "model")
    if mod_lines:
        blocks += [
            ("p", "Best model per optimizer (by mean AUBC), against each other model (Holm over the pairs of one optimizer):"),
            ("ul", mod_lines),
        ]
    a = tables.anova
    if len(a):
        by = [k for k in keys if k not in ("model", "optimizer")]
        shown_by = [k for k in by if a[k].nunique() > 1] or ["strategy"]
        for group, t in a.groupby(by, observed=True, sort=True):
            values = dict(zip(by, group if isinstance(group, tuple) else (group,)))
            disp = pd.DataFrame(
                {
                    "term": t["term"],
                    "df": [f"{v:g}" for v in t["df"]],
                    "sum of squares": [f"{v:.3g}" for v in t["sum_sq"]],
                    "F": ["–" if not np.isfinite(v) else f"{v:.2f}" for v in t["F"]],
                    "p": [_p(v) for v in t["p_value"]],
                }
            )
            blocks += [
                (
                    "p",
                    f"Two-way ANOVA of AUBC, {_tag(values, shown_by)} (type II, aubc ~ C(model) * C(optimizer)): "
                    + anova_reading(a, values),
                ),
                ("table", disp),
            ]
    else:
        blocks.append(
            ("p", "Two-way ANOVA: not computed (it needs 2+ models, 2+ optimizers and replicated cells of finished runs).")
        )
    if len(gn):
        disp = pd.DataFrame(
            {
                **{k: gn[k].astype(str) for k in keys if k == "strategy" or gn[k].nunique() > 1},
                "pairs": gn["n_pairs"].astype(str) + np.where(gn["n_pairs"] < MIN_TRIALS, f" {FLAG}", ""),
                "AUBC gain (points)": [
                    _pct(m, c if n >= MIN_TRIALS else math.nan, sign=True)
                    for m, c, n in zip(gn["diff_mean"], gn["diff_ci95"], gn["n_pairs"])
                ],
                "p": [_p(v) for v in gn["p_value"]],
                "p_holm": [_p(v) for v in gn["p_holm"]],
                "significant": np.where(gn["p_holm"] < ALPHA, "yes", "no"),
            }
        )
        blocks += [
            ("p", "Gain in AUBC over random per model x optimizer, paired by trial (Holm over the groups of one strategy):"),
            ("table", disp),
        ]
    return blocks


def answer_lines(tables) -> list[str]:
    """The headline answers, one sentence each: best group per strategy, optimizer/model effects
    that survive Holm, the interaction, each strategy against random."""
    keys, g = tables.keys, tables.grid
    facet = _facets(tables.grid, keys) if len(tables.grid) else []
    out = []
    for group, t in g.groupby([*facet, "strategy"], observed=True, sort=True):
        best = t.sort_values(["aubc_mean", "model", "optimizer"], ascending=[False, True, True]).iloc[0]
        out.append(
            f"{_tag(best, [*facet, 'strategy'])}: best {best['model']} + {best['optimizer']}, AUBC "
            f"{_pct(best['aubc_mean'], best['aubc_ci95'])}%, final accuracy {_pct(best['final_acc_mean'], best['final_acc_ci95'])}% "
            f"(n={int(best['n'])}{' ' + FLAG if best['few'] else ''})."
        )
    for name, frame, factor in (("optimizers", tables.optimizers, "optimizer"), ("models", tables.models, "model")):
        if frame.empty:
            continue
        sig = frame[frame["p_holm"] < ALPHA]
        tested = int(frame["p_holm"].notna().sum())
        if len(sig):
            items = [
                f"{r[f'{factor}_a'] if r['diff_mean'] > 0 else r[f'{factor}_b']} > "
                f"{r[f'{factor}_b'] if r['diff_mean'] > 0 else r[f'{factor}_a']} "
                f"({_tag(r, [k for k in [*facet, 'strategy', 'model', 'optimizer'] if k != factor])}, "
                f"{_pct(abs(r['diff_mean']), sign=False)} points)"
                for _, r in sig.iterrows()
            ]
            shown = items[:6] + ([f"{len(items) - 6} more"] if len(items) > 6 else [])
            out.append(
                f"Differences between {name} in AUBC that survive Holm: {len(sig)} of {tested} pairs: " + "; ".join(shown) + "."
            )
        else:
            out.append(f"No difference between {name} in AUBC survives Holm ({tested} paired comparisons).")
    a = tables.anova
    if len(a):
        inter = a[a["term"] == "model:optimizer"]
        sig = inter[inter["p_value"] < ALPHA]
        by = [*facet, "strategy"]
        if len(sig):
            out.append(
                "The optimizer's effect depends on the architecture (model x optimizer interaction, p < 0.05) for "
                + ", ".join(_tag(r, by) for _, r in sig.iterrows())
                + (f"; not for the other {len(inter) - len(sig)}." if len(inter) > len(sig) else ".")
            )
        else:
            out.append(f"No model x optimizer interaction in AUBC (two-way ANOVA, p ≥ 0.05 for all {len(inter)} strategies).")
    gn = tables.gains
    for group, t in gn.groupby([*facet, "strategy"], observed=True, sort=True):
        first = t.iloc[0]
        up = int(((t["diff_mean"] > 0) & (t["p_holm"] < ALPHA)).sum())
        down = int(((t["diff_mean"] < 0) & (t["p_holm"] < ALPHA)).sum())
        out.append(
            f"{_tag(first, [*facet, 'strategy'])} vs random (AUBC, paired by trial, Holm): higher in "
            f"{int((t['diff_mean'] > 0).sum())} of {len(t)} model x optimizer groups, significantly higher in {up}, "
            f"significantly lower in {down}; mean gain {_pct(t['diff_mean'].mean(), sign=True)} points."
        )
    return out


def summary_lines(tables) -> list[str]:
    """The terminal summary, five lines with one non-random strategy: completeness and cost; the
    best model + optimizer per strategy; optimizer differences that survive Holm; the interaction
    and model differences; each strategy against random (AUBC, paired, Holm)."""
    from analysis.findings import completeness_line, cost_line

    keys, g = tables.keys, tables.grid
    facet = _facets(tables.grid, keys) if len(tables.grid) else []
    lines = [completeness_line(tables) + "; " + cost_line(tables).split(";")[0]]
    if g.empty:
        return lines + ["no finished run yet: nothing to compare"]
    best = []
    for _, t in g.groupby([*facet, "strategy"], observed=True, sort=True):
        b = t.sort_values(["aubc_mean", "model", "optimizer"], ascending=[False, True, True]).iloc[0]
        best.append(
            f"{_tag(b, [*facet, 'strategy'])} {b['model']} + {b['optimizer']} {_pct(b['aubc_mean'], b['aubc_ci95'])}% "
            f"(n={int(b['n'])}{' ' + FLAG if b['few'] else ''})"
        )
    lines.append("best by AUBC: " + "; ".join(best))

    def survivors(frame: pd.DataFrame, factor: str, within: list[str]) -> str:
        if frame.empty:
            return "no pairs to test"
        sig = frame[frame["p_holm"] < ALPHA]
        items = []
        for _, r in sig.iterrows():
            hi, lo = (r[f"{factor}_a"], r[f"{factor}_b"]) if r["diff_mean"] > 0 else (r[f"{factor}_b"], r[f"{factor}_a"])
            items.append(f"{hi} > {lo} ({_tag(r, within)}, {_pct(abs(r['diff_mean']))} pts, p_holm {_p(r['p_holm'])})")
        shown = "; ".join(items[:4]) + (f"; +{len(items) - 4} more" if len(items) > 4 else "")
        return f"{len(sig)} of {int(frame['p_holm'].notna().sum())} pairs significant after Holm" + (
            f": {shown}" if items else ""
        )

    lines.append(
        "optimizers (AUBC, paired by trial): " + survivors(tables.optimizers, "optimizer", [*facet, "strategy", "model"])
    )
    a = tables.anova
    inter = a[a["term"] == "model:optimizer"] if len(a) else a
    anova_text = (
        "; ".join(f"{_tag(r, [*facet, 'strategy'])} p = {_p(r['p_value'])}" for _, r in inter.iterrows())
        if len(inter)
        else "not testable"
    )
    lines.append(
        f"model x optimizer interaction (ANOVA of AUBC): {anova_text}; models: "
        + survivors(tables.models, "model", [*facet, "strategy", "optimizer"])
    )
    gn = tables.gains
    for _, t in gn.groupby([*facet, "strategy"], observed=True, sort=True):
        up = int(((t["diff_mean"] > 0) & (t["p_holm"] < ALPHA)).sum())
        down = int(((t["diff_mean"] < 0) & (t["p_holm"] < ALPHA)).sum())
        lines.append(
            f"{_tag(t.iloc[0], [*facet, 'strategy'])} vs random (AUBC, paired, Holm): mean gain "
            f"{_pct(t['diff_mean'].mean(), sign=True)} pts, higher in {int((t['diff_mean'] > 0).sum())} of {len(t)} "
            f"model x optimizer groups, significantly higher in {up}, lower in {down}"
        )
    if gn.empty and "random" in set(g["strategy"]) and g["strategy"].nunique() > 1:
        lines.append("no finished non-random run has a finished random run of the same trial to pair with yet")
    return lines
