"""tuning_edges.csv: how often a tuned value was chosen at an edge of what was searched.

Each tuned cycle's record (al_core.tune.edges, the row's `tune.edges`) names the chosen values that
sit at an end of their list or within 10% of an end of their range. A choice at an edge says the
best value may lie outside the search: widen it before reading the comparison. Per group (the
report's keys) and hyper-parameter: the choices made, how many at the low and at the high edge.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["hyper_parameter", "choices", "at_low", "at_high", "share_at_edge"]


def tuning_edges(tables) -> pd.DataFrame | None:
    """The report's table (None when no run of the sweep recorded edges: no tuning, or older runs)."""
    return edge_table(tables.cycles, tables.keys)


def edge_blocks(table: pd.DataFrame | None, keys: list[str]) -> list[tuple]:
    """The report's paragraph and table of the choices at an edge ([] without tuning edges)."""
    if table is None:
        return []
    flagged = int((table["at_low"] + table["at_high"]).sum())
    shown = table.drop(columns=[k for k in keys if table[k].nunique() < 2]).assign(
        share_at_edge=(100 * table["share_at_edge"]).round(0).astype(int).astype(str) + "%"
    )
    shown = shown.astype(str)  # the report's tables are text
    text = (
        f"Tuned values chosen at an edge of what was searched (tuning_edges.csv): {flagged} of "
        f"{int(table['choices'].sum())} choices. A value at an edge says the best may lie outside the "
        "search: widen the range before reading the comparison."
    )
    return [("p", text), ("table", shown)]


def edge_table(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame | None:
    if "tune_edges" not in cycles or cycles["tune_edges"].isna().all():
        return None
    tuned = cycles[cycles["tune_edges"].notna()]
    rows = []
    for _, row in tuned.iterrows():
        flagged = dict(item.split(":") for item in row["tune_edges"].split(",") if item)
        for col in (c for c in tuned.columns if str(c).startswith("tuned.")):
            if pd.notna(row[col]):
                hp = col[len("tuned.") :]
                rows.append({**{k: row[k] for k in keys}, "hyper_parameter": hp, "edge": flagged.get(hp, "")})
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    out = frame.groupby([*keys, "hyper_parameter"], observed=True, sort=True)["edge"].agg(
        choices="size", at_low=lambda e: int((e == "low").sum()), at_high=lambda e: int((e == "high").sum())
    )
    out = out.reset_index()
    out["share_at_edge"] = (out["at_low"] + out["at_high"]) / out["choices"]
    return out[[*keys, *COLUMNS]]
