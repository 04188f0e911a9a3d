"""Sentences generated from the report's tables: the findings section and the short summary that
the CLI prints. They state numbers from the tables and significance at p < 0.05, nothing more.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.metrics import EQUAL_TOL

ALPHA = 0.05


def _pct(value: float, ci: float = math.nan, sign: bool = False) -> str:
    text = f"{value * 100:+.2f}" if sign else f"{value * 100:.2f}"
    return f"{text} ± {ci * 100:.2f}" if math.isfinite(ci) else text


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "no paired test (fewer than 2 paired trials, or all differences equal)"
    verdict = "significant" if p < ALPHA else "not significant"
    shown = "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"
    return f"{shown}, {verdict} at p < {ALPHA}"


def _count(n, noun: str) -> str:
    n = 0 if pd.isna(n) else int(n)
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _facet_columns(tables) -> list[str]:
    """The key columns besides model, optimizer and strategy that take several values."""
    return [k for k in tables.keys if k not in ("model", "optimizer", "strategy") and tables.runs[k].nunique() > 1]


def _tag(row, columns: list[str]) -> str:
    return " · ".join(str(row[c]) for c in columns)


def completeness_line(tables) -> str:
    counts = tables.status_counts()
    text = f"{counts['done']} of {counts['total']} runs done, {counts['in progress']} in progress"
    if tables.data.expected_known:
        text += f", {counts['missing']} missing"
    return (
        text
        + f"; {counts['cycles_done']} cycles finished"
        + (f" of {counts['cycles_expected']}" if counts["cycles_expected"] else "")
    )


def best_by_aubc(tables) -> pd.DataFrame:
    """Per strategy (and facet): the model x optimizer group with the highest mean AUBC."""
    g = tables.groups.dropna(subset=["aubc_mean"])
    by = [*_facet_columns(tables), "strategy"]
    ranked = g.sort_values([*by, "aubc_mean"], ascending=[True] * len(by) + [False], kind="stable")
    return ranked.groupby(by, observed=True).head(2).assign(rank=lambda t: t.groupby(by, observed=True).cumcount())


def final_vs_random(tables) -> pd.DataFrame:
    """vs_random rows at each group's largest paired budget."""
    vs = tables.vs_random
    if vs.empty:
        return vs
    top = vs.groupby(tables.keys, observed=True)["n_labeled"].transform("max")
    return vs[vs["n_labeled"] == top]


def findings(tables) -> list[str]:
    """The findings section: one sentence per item, every number taken from a table."""
    facet = _facet_columns(tables)
    out = []
    if tables.cycles.empty:
        return ["No cycle has finished yet: there is nothing to compare."]

    best = best_by_aubc(tables)
    for _, row in best[best["rank"] == 0].iterrows():
        tag = _tag(row, [*facet, "strategy"])
        nxt = best[(best["rank"] == 1) & (best["strategy"] == row["strategy"])]
        for c in facet:
            nxt = nxt[nxt[c] == row[c]]
        text = (
            f"{tag}: highest mean AUBC {row['model']} + {row['optimizer']} "
            f"({_pct(row['aubc_mean'], row['aubc_ci95'])}%, {_count(row['n_final'], 'run')} up to {int(row['final_n_labeled'])} labels)"
        )
        if len(nxt):
            n = nxt.iloc[0]
            text += f"; next {n['model']} + {n['optimizer']} ({_pct(n['aubc_mean'], n['aubc_ci95'])}%)"
        out.append(text + ".")

    ranking = tables.ranking
    if not ranking.empty:
        gk = [k for k in tables.keys if k != "optimizer"]
        for _, rows in ranking.groupby(gk, observed=True, sort=True):
            rows = rows.sort_values("n_labeled")
            last = rows.iloc[-1]
            winner = last["best"]
            # A tie is nobody's win (the sort put the alphabetically first optimizer on top).
            wins = rows["best"].eq(winner) & (rows["best_acc"] - rows["runner_up_acc"] > EQUAL_TOL)
            wins_sig = (wins & rows["p_value"].lt(ALPHA)).sum()
            tag = _tag(last, [*facet, "model", "strategy"])
            if last["best_acc"] - last["runner_up_acc"] > EQUAL_TOL:
                lead = (
                    f"{winner} has the highest mean accuracy ({last['best_acc'] * 100:.2f}% vs "
                    f"{last['runner_up']} {last['runner_up_acc'] * 100:.2f}%)"
                )
            else:
                lead = f"{winner} and {last['runner_up']} tie for the highest mean accuracy ({last['best_acc'] * 100:.2f}%)"
            out.append(
                f"{tag}: at {int(last['n_labeled'])} labels {lead}; paired by trial "
                f"({_count(last['n_pairs'], 'trial')} finished by both) the difference is "
                f"{_pct(last['diff_mean'], last['diff_ci95'], sign=True)} points, {_p(last['p_value'])}; "
                f"{winner} leads at {int(wins.sum())} of {len(rows)} budgets, significantly at {wins_sig}."
            )

    final = final_vs_random(tables)
    for _, rows in final.groupby([*facet, "strategy"], observed=True, sort=True):
        first = rows.iloc[0]
        higher = int((rows["diff_mean"] > 0).sum())
        sig_up = int(((rows["diff_mean"] > 0) & (rows["p_value"] < ALPHA)).sum())
        sig_down = int(((rows["diff_mean"] < 0) & (rows["p_value"] < ALPHA)).sum())
        top = rows.sort_values("diff_mean", ascending=False).iloc[0]
        out.append(
            f"{_tag(first, [*facet, 'strategy'])} against random at the largest paired budget: higher mean accuracy in {higher} of "
            f"{len(rows)} model x optimizer groups, significantly higher in {sig_up}, significantly lower in {sig_down}; "
            f"largest mean difference {top['model']} + {top['optimizer']} at {int(top['n_labeled'])} labels, "
            f"{_pct(top['diff_mean'], top['diff_ci95'], sign=True)} points ({_p(top['p_value'])})."
        )
    if "random" in set(tables.cycles["strategy"]) and final.empty:
        out.append("No non-random run has a random run of the same model, optimizer and trial to pair with yet.")

    out.append(cost_line(tables) + ".")

    classes = tables.classes
    for _, rows in classes.groupby([*facet, "strategy"], observed=True, sort=True):
        lo, hi = rows.loc[rows["fraction"].idxmin()], rows.loc[rows["fraction"].idxmax()]
        out.append(
            f"{_tag(lo, [*facet, 'strategy'])}: queried class shares range from {lo['fraction'] * 100:.1f}% (class {lo['class']}) "
            f"to {hi['fraction'] * 100:.1f}% (class {hi['class']}); uniform is {100 / len(rows):.1f}%."
        )
    return out


def cost_line(tables) -> str:
    g = tables.groups
    text = (
        f"compute so far: {g['gpu_hours'].sum():.2f} GPU-hours and {g['cpu_hours'].sum():.2f} CPU-hours (train + select + eval)"
    )
    timed = g.dropna(subset=["train_time_s_mean"])
    if len(timed):
        top = timed.loc[timed["train_time_s_mean"].idxmax()]
        text += (
            f"; longest mean train time per run {top['model']} + {top['optimizer']} ({top['strategy']}), "
            f"{top['train_time_s_mean'] / 3600:.3f} h"
        )
    return text


def summary_lines(tables) -> list[str]:
    """A short summary for a terminal: completeness, the best model x optimizer by AUBC per
    strategy, each strategy against random at the final budget, and the compute used.

    Example
    -------
    >>> for line in summary_lines(compute_tables(load_sweep_dir("results/demo"))):  # doctest: +SKIP
    ...     print(line)
    """
    from analysis.headline import summary_lines as headline_summary

    return headline_summary(tables)


def summary_lines_by_budget(tables) -> list[str]:
    """The earlier summary: best group by AUBC per strategy and the test against random at the final budget."""
    facet = _facet_columns(tables)
    lines = [completeness_line(tables)]
    best = best_by_aubc(tables)
    best = best[best["rank"] == 0]
    for _, r in best.iterrows():
        lines.append(
            f"best by AUBC, {_tag(r, [*facet, 'strategy'])}: {r['model']} + {r['optimizer']}, "
            f"AUBC {_pct(r['aubc_mean'], r['aubc_ci95'])}% over {_count(r['n_final'], 'run')}"
        )
    final = final_vs_random(tables)
    for _, rows in final.groupby([*facet, "strategy"], observed=True, sort=True):
        # The strategy's best group by AUBC when it has a pair with random, else its largest gain.
        pick = best[(best["strategy"] == rows.iloc[0]["strategy"])]
        chosen = rows.merge(pick[[*facet, "strategy", "model", "optimizer"]], on=[*facet, "strategy", "model", "optimizer"])
        r = (chosen if len(chosen) else rows.sort_values("diff_mean", ascending=False)).iloc[0]
        sig = int((rows["p_value"] < ALPHA).sum())
        lines.append(
            f"{_tag(r, [*facet, 'strategy'])} vs random at {int(r['n_labeled'])} labels, {r['model']} + {r['optimizer']}: "
            f"{_pct(r['diff_mean'], r['diff_ci95'], sign=True)} points, "
            + ("p = n/a" if not math.isfinite(r["p_value"]) else f"p = {r['p_value']:.4f}")
            + f"; higher in {int((rows['diff_mean'] > 0).sum())} of {len(rows)} groups, {sig} with p < {ALPHA}"
        )
    lines.append(cost_line(tables))
    return lines
