"""Sentences generated from the report's tables: the findings section and the short summary that
the CLI prints. They state numbers from the tables; a difference is claimed only where a pair
table's `significant` says so (analysis.questions: one Holm family per question), never from a
raw p-value.
"""

from __future__ import annotations

import pandas as pd

from analysis.headline import _facets, _pct, _tag, claim_text, completeness_line, cost_line
from analysis.headline import summary_lines as headline_summary
from analysis.metrics import EQUAL_TOL, rows_matching

__all__ = ["completeness_line", "cost_line", "findings", "summary_lines"]


def _count(n, noun: str) -> str:
    n = 0 if pd.isna(n) else int(n)
    return f"{n} {noun}" + ("" if n == 1 else "s")


def best_by_aubc(tables) -> pd.DataFrame:
    """Per strategy (and facet): the model x optimizer group with the highest mean AUBC."""
    g = tables.groups.dropna(subset=["aubc_mean"])
    by = [*_facets(tables.runs, tables.keys), "strategy"]
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
    if tables.cycles.empty:
        return ["No cycle has finished yet: there is nothing to compare."]
    out = best_lines(tables) + ranking_lines(tables) + vs_random_lines(tables)
    out.append(cost_line(tables) + ".")
    facet = _facets(tables.runs, tables.keys)
    for _, rows in tables.classes.groupby([*facet, "strategy"], observed=True, sort=True):
        lo, hi = rows.loc[rows["fraction"].idxmin()], rows.loc[rows["fraction"].idxmax()]
        out.append(
            f"{_tag(lo, [*facet, 'strategy'])}: queried class shares range from {lo['fraction'] * 100:.1f}% (class {lo['class']}) "
            f"to {hi['fraction'] * 100:.1f}% (class {hi['class']}); uniform is {100 / len(rows):.1f}%."
        )
    return out


def best_lines(tables) -> list[str]:
    """Per strategy (and facet): the two model x optimizer groups with the highest mean AUBC (descriptive)."""
    facet = _facets(tables.runs, tables.keys)
    best = best_by_aubc(tables)
    out = []
    for _, row in best[best["rank"] == 0].iterrows():
        nxt = rows_matching(best[best["rank"] == 1], {c: row[c] for c in [*facet, "strategy"]})
        text = (
            f"{_tag(row, [*facet, 'strategy'])}: highest mean AUBC {row['model']} + {row['optimizer']} "
            f"({_pct(row['aubc_mean'], row['aubc_ci95'])}%, {_count(row['n_final'], 'run')} up to {int(row['final_n_labeled'])} labels)"
        )
        if len(nxt):
            n = nxt.iloc[0]
            text += f"; next {n['model']} + {n['optimizer']} ({_pct(n['aubc_mean'], n['aubc_ci95'])}%)"
        out.append(text + ".")
    return out


def ranking_lines(tables) -> list[str]:
    """Per model x strategy: which optimizer has the highest mean accuracy at the last budget
    (descriptive: the leader and runner-up are chosen from the same data, so optimizer_ranking's
    p is not a test of them), then the optimizer differences the optimizer question claims."""
    ranking, facet = tables.ranking, _facets(tables.runs, tables.keys)
    if ranking.empty:
        return []
    out = []
    for _, rows in ranking.groupby([k for k in tables.keys if k != "optimizer"], observed=True, sort=True):
        last = rows.sort_values("n_labeled").iloc[-1]
        wins = rows["best"].eq(last["best"]) & (rows["best_acc"] - rows["runner_up_acc"] > EQUAL_TOL)
        if last["best_acc"] - last["runner_up_acc"] > EQUAL_TOL:
            lead = (
                f"{last['best']} has the highest mean accuracy ({last['best_acc'] * 100:.2f}% vs "
                f"{last['runner_up']} {last['runner_up_acc'] * 100:.2f}%) and leads at {int(wins.sum())} of {len(rows)} budgets"
            )
        else:
            lead = f"{last['best']} and {last['runner_up']} tie for the highest mean accuracy ({last['best_acc'] * 100:.2f}%)"
        out.append(
            f"{_tag(last, [*facet, 'model', 'strategy'])}: at {int(last['n_labeled'])} labels {lead} (descriptive); "
            + _claims(tables.optimizers, "optimizer", last, [*facet, "strategy", "model"])
        )
    return out


def _claims(frame: pd.DataFrame, factor: str | None, where, within: list[str]) -> str:
    """The significant rows of `frame` that match `where` on `within`, as claims."""
    rows = rows_matching(frame, {k: where[k] for k in within})
    what = "optimizers" if factor == "optimizer" else "models" if factor == "model" else "random"
    sig = rows[rows["significant"]] if len(rows) else rows
    if sig.empty:
        return f"no evidence in AUBC of a difference from {what} here (Holm over the question)."
    tag = within if factor else [*within, "model", "optimizer"]
    return "in AUBC " + "; ".join(claim_text(r, factor, tag) for _, r in sig.iterrows()) + "."


def vs_random_lines(tables) -> list[str]:
    """Per strategy: how often its accuracy is above random at the largest paired budget
    (descriptive), then what the `<strategy> vs random` question claims (AUBC, gains.csv)."""
    facet, final, out = _facets(tables.runs, tables.keys), final_vs_random(tables), []
    for _, rows in final.groupby([*facet, "strategy"], observed=True, sort=True):
        first = rows.iloc[0]
        top = rows.sort_values("diff_mean", ascending=False).iloc[0]
        out.append(
            f"{_tag(first, [*facet, 'strategy'])} against random at the largest paired budget: higher mean accuracy in "
            f"{int((rows['diff_mean'] > 0).sum())} of {len(rows)} model x optimizer groups, largest mean difference "
            f"{top['model']} + {top['optimizer']} at {int(top['n_labeled'])} labels, "
            f"{_pct(top['diff_mean'], top['diff_ci95'], sign=True)} points (descriptive); "
            + _claims(tables.gains, None, first, [*facet, "strategy"])
        )
    if "random" in set(tables.cycles["strategy"]) and final.empty:
        out.append("No non-random run has a random run of the same model, optimizer and trial to pair with yet.")
    return out


def summary_lines(tables) -> list[str]:
    """A short summary for a terminal: completeness, the best model x optimizer by AUBC per
    strategy, the claims of each question, and the compute used.

    Example
    -------
    >>> for line in summary_lines(compute_tables(load_sweep_dir("results/demo"))):  # doctest: +SKIP
    ...     print(line)
    """
    return headline_summary(tables)
