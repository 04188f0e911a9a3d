"""The report's figures: one function per figure, each drawn from one table (never raw files).

Okabe-Ito colours plus a distinct marker and line style per line, so that every line stays
distinguishable in greyscale print and for colour-blind readers; `random` is always black, dashed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from analysis.write import write_bytes

# Okabe & Ito (2008), colour-blind safe; yellow last because it is faint on white paper.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", "-.", ":"]
RANDOM_STYLE = dict(color="black", marker="x", linestyle="--")
DPI = 110
MIN_BAND_N = 3  # groups with fewer trials are drawn without a CI band or bar
PANEL = (3.1, 2.4)  # inches per panel


def _styles(values: Iterable) -> dict:
    """A fixed (colour, marker, line style) per value, in sorted order; `random` black and dashed."""
    styles = {}
    others = [v for v in sorted(set(values), key=str) if v != "random"]
    for i, v in enumerate(others):
        styles[v] = dict(
            color=COLOURS[i % len(COLOURS)], marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)]
        )
    if "random" in set(values):
        styles["random"] = dict(RANDOM_STYLE)
    return styles


def _label(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One string per row joining the values of those `columns` that vary (all, if none vary)."""
    varying = [c for c in columns if c in table and table[c].nunique() > 1] or [c for c in columns[-1:] if c in table]
    if table.empty or not varying:
        return pd.Series([""] * len(table), index=table.index, dtype=object)
    out = table[varying[0]].astype(str)
    for c in varying[1:]:
        out = out + " · " + table[c].astype(str)
    return out


def _extra(keys: list[str]) -> list[str]:
    return [k for k in keys if k not in ("dataset", "model", "optimizer", "strategy")]


def _figure(title: str, size: tuple[float, float], n_rows: int, n_cols: int, **shared) -> tuple[Figure, np.ndarray]:
    """A titled figure of `size` inches with an n_rows x n_cols array of axes (`shared`: sharex, sharey)."""
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **shared)
    fig.suptitle(title, fontsize=11)
    return fig, axes


def _grid(n_rows: int, n_cols: int, title: str) -> tuple[Figure, np.ndarray]:
    size = (PANEL[0] * n_cols + 0.4, PANEL[1] * n_rows + 0.9)
    return _figure(title, size, n_rows, n_cols, sharex=True, sharey=True)


def _x_axis(ax, budget: bool) -> None:
    """Few integer ticks; labelled-set sizes in thousands ("2k") so that they never overlap."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    if budget:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}"))


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    write_bytes(path, buf.getvalue())
    return path


def _placeholder(path: Path, title: str, message: str) -> Path:
    fig = Figure(figsize=(5, 2.2), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    return _save(fig, path)


def _handles(styles: dict) -> list[Line2D]:
    return [Line2D([], [], label=str(v), **s) for v, s in styles.items()]


def _legend(fig: Figure, handles: list, title: str | None = None, ncols: int = 6) -> None:
    fig.legend(
        handles=handles,
        title=title,
        loc="outside lower center",
        ncols=min(len(handles), ncols),
        fontsize=8,
        title_fontsize=8,
        frameon=False,
    )


def _dress_panels(
    axes: np.ndarray, row_values: list, col_values: list, xlabel: str, ylabel: str, zero_line: bool, budget: bool
) -> None:
    """Titles (row · column), grids, a zero line if asked, x labels on the bottom row, y labels on the left."""
    for i, r in enumerate(row_values):
        for j, c in enumerate(col_values):
            ax = axes[i, j]
            ax.set_title(" · ".join(v for v in (r, c) if v), fontsize=9)
            ax.grid(True, linewidth=0.4, alpha=0.5)
            ax.tick_params(labelsize=8)
            if zero_line:
                ax.axhline(0, color="grey", linewidth=0.8)
            if i == len(row_values) - 1:
                ax.set_xlabel(xlabel, fontsize=9)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=9)
            _x_axis(ax, budget=budget)


def _curves(
    table: pd.DataFrame,
    path: Path,
    *,
    rows: list[str],
    cols: list[str],
    hue: str,
    x: str,
    y: str,
    band: str | None,
    title: str,
    xlabel: str,
    ylabel: str,
    scale: float = 100.0,
    zero_line: bool = False,
    bounds: tuple[float, float] | None = (0.0, 100.0),
) -> Path:
    """A grid of panels (one per row label x column label) with one line per `hue` value and a
    shaded band of +-`band` around it, clipped to the metric's possible range `bounds` (with two
    trials a 95% CI is 12.7 standard errors wide and would otherwise dwarf the curves)."""
    t = table.dropna(subset=[y])
    if t.empty:
        return _placeholder(path, title, "no finished cycles yet")
    t = t.assign(_row=_label(t, rows), _col=_label(t, cols))
    row_values, col_values = sorted(t["_row"].unique()), sorted(t["_col"].unique())
    styles = _styles(t[hue])
    fig, axes = _grid(len(row_values), len(col_values), title)
    for (r, c, h), line in t.sort_values(x).groupby(["_row", "_col", hue], sort=False, observed=True):
        ax = axes[row_values.index(r), col_values.index(c)]
        xs, ys = line[x].to_numpy(float), line[y].to_numpy(float) * scale
        ax.plot(xs, ys, markersize=4, linewidth=1.4, label=str(h), **styles[h])
        if band is not None:
            half = line[band].to_numpy(float) * scale
            if "n_trials" in line:  # fewer than 3 trials: no band (a CI on 2 trials says little)
                half = np.where(line["n_trials"].to_numpy(float) >= MIN_BAND_N, half, np.nan)
            lo, hi = ys - half, ys + half
            if bounds is not None:
                lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
            ax.fill_between(xs, lo, hi, color=styles[h]["color"], alpha=0.18, linewidth=0)
    _dress_panels(axes, row_values, col_values, xlabel, ylabel, zero_line, budget=x == "n_labeled")
    _legend(fig, _handles(styles), hue)
    return _save(fig, path)


def _by_budget(summary, keys, path, row: str, col: str, hue: str, title: str, metric: str = "acc", ylabel: str = "") -> Path:
    """A metric of summary.csv (mean, 95% CI band) against labelled samples: panels per `row` (after
    dataset and extra axes) x `col`, a line per `hue`."""
    return _curves(
        summary,
        path,
        rows=["dataset", *_extra(keys), row],
        cols=[col],
        hue=hue,
        x="n_labeled",
        y=f"{metric}_mean",
        band=f"{metric}_ci95",
        title=title,
        xlabel="labelled samples",
        ylabel=ylabel or "accuracy (%)",
    )


def accuracy_by_model(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Test accuracy vs labelled samples; a panel per model (and strategy), a line per optimizer."""
    return _by_budget(summary, keys, path, "strategy", "model", "optimizer", "Test accuracy per model (mean, 95% CI over trials)")


def accuracy_by_optimizer(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Test accuracy vs labelled samples; a panel per optimizer (and strategy), a line per model."""
    return _by_budget(
        summary, keys, path, "strategy", "optimizer", "model", "Test accuracy per optimizer (mean, 95% CI over trials)"
    )


def strategies_vs_random(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Each strategy's accuracy curve beside random's; a panel per model x optimizer."""
    return _by_budget(summary, keys, path, "model", "optimizer", "strategy", "Query strategies against random (mean, 95% CI)")


def macro_f1(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Macro-F1 vs labelled samples; a panel per model (and strategy), a line per optimizer."""
    title = "Macro-F1 per model (mean, 95% CI over trials)"
    return _by_budget(summary, keys, path, "strategy", "model", "optimizer", title, metric="f1", ylabel="macro-F1 (%)")


def label_efficiency(summary: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Label efficiency (accuracy points per % of the pool labelled) per cycle."""
    return _curves(
        summary,
        path,
        rows=["dataset", *_extra(keys), "strategy"],
        cols=["model"],
        hue="optimizer",
        x="cycle",
        y="le_mean",
        band="le_ci95",
        scale=1.0,
        zero_line=True,
        bounds=None,
        title="Label efficiency: accuracy points gained per % of the pool labelled (mean, 95% CI)",
        xlabel="cycle",
        ylabel="points per % labelled",
    )


def gain_over_random(vs_random: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Paired accuracy gain over random with its 95% CI; filled markers where p < 0.05."""
    title = "Accuracy gain over random, paired by trial (mean, 95% CI)"
    t = vs_random.dropna(subset=["diff_mean"])
    if t.empty:
        return _placeholder(path, title, "no strategy has a random run to pair with yet")
    t = t.assign(_row=_label(t, ["dataset", *_extra(keys), "model"]), _col=_label(t, ["optimizer"]))
    row_values, col_values = sorted(t["_row"].unique()), sorted(t["_col"].unique())
    styles = _styles(t["strategy"])
    fig, axes = _grid(len(row_values), len(col_values), title)
    for (r, c, s), line in t.sort_values("n_labeled").groupby(["_row", "_col", "strategy"], sort=False, observed=True):
        ax = axes[row_values.index(r), col_values.index(c)]
        st = styles[s]
        xs, ys = line["n_labeled"].to_numpy(float), line["diff_mean"].to_numpy(float) * 100
        err = np.nan_to_num(np.where(line["n_pairs"].to_numpy(float) >= MIN_BAND_N, line["diff_ci95"].to_numpy(float) * 100, 0))
        ax.errorbar(xs, ys, yerr=err, color=st["color"], linestyle=st["linestyle"], linewidth=1.2, capsize=2, marker="none")
        significant = (line["p_value"] < 0.05).to_numpy()
        for shown, face, size in ((significant, st["color"], 6), (~significant, "white", 5)):
            ax.plot(xs[shown], ys[shown], st["marker"], markerfacecolor=face, color=st["color"], markersize=size)
    _dress_panels(axes, row_values, col_values, "labelled samples", "gain (accuracy points)", zero_line=True, budget=True)
    key = [
        Line2D([], [], marker="o", color="grey", linestyle="none", label="p < 0.05"),
        Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="none", label="p ≥ 0.05"),
    ]
    _legend(fig, _handles(styles) + key, "strategy")
    return _save(fig, path)


def aubc_gain(gains: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """The headline's compact figure: AUBC gain over random per model x optimizer, one panel per
    non-random strategy; 95% CI bars (none below 3 pairs), filled markers where Holm's p < 0.05."""
    title = "AUBC gain over random (points; paired by trial)"
    t = gains.dropna(subset=["diff_mean"])
    if t.empty:
        return _placeholder(path, title, "no strategy has a random run to pair with yet")
    t = t.assign(_panel=_label(t, ["dataset", *_extra(keys), "strategy"]), _y=_label(t, ["model", "optimizer"]))
    panels = sorted(t["_panel"].unique())
    labels = sorted(t["_y"].unique())
    fig, axes = _figure(title, (3.4 * len(panels) + 0.6, 0.32 * len(labels) + 1.3), 1, len(panels), sharey=True)
    axes = axes[0]
    for ax, panel in zip(axes, panels):
        rows = t[t["_panel"] == panel]
        ys = np.array([labels.index(v) for v in rows["_y"]], dtype=float)
        xs = rows["diff_mean"].to_numpy(float) * 100
        err = np.where(rows["n_pairs"].to_numpy(float) >= MIN_BAND_N, rows["diff_ci95"].to_numpy(float) * 100, np.nan)
        sig = rows["significant"].astype(bool).to_numpy()
        ax.errorbar(xs, ys, xerr=np.nan_to_num(err), fmt="none", ecolor=COLOURS[0], elinewidth=1.2, capsize=2)
        ax.plot(xs[sig], ys[sig], "o", color=COLOURS[0], markersize=6)
        ax.plot(xs[~sig], ys[~sig], "o", color=COLOURS[0], markerfacecolor="white", markersize=5)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(panel, fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("gain (AUBC points)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    axes[0].invert_yaxis()
    return _save(fig, path)


def heatmaps(groups: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Final accuracy and AUBC as model x optimizer heatmaps, one pair per strategy."""
    title = "Final accuracy and AUBC (%, mean over trials at each group's largest budget)"
    t = groups.dropna(subset=["final_acc_mean"])
    if t.empty:
        return _placeholder(path, title, "no finished cycles yet")
    t = t.assign(_row=_label(t, ["dataset", *_extra(keys), "strategy"]))
    row_values = sorted(t["_row"].unique())
    models, optimizers = sorted(t["model"].unique()), sorted(t["optimizer"].unique())
    size = (2 * (0.75 * len(optimizers) + 1.8), (0.5 * len(models) + 1.0) * len(row_values) + 0.6)
    fig, axes = _figure(title, size, len(row_values), 2)
    for i, r in enumerate(row_values):
        sub = t[t["_row"] == r]
        for j, (column, name) in enumerate((("final_acc_mean", "final accuracy"), ("aubc_mean", "AUBC"))):
            table = sub.pivot_table(index="model", columns="optimizer", values=column, aggfunc="mean")
            values = table.reindex(index=models, columns=optimizers).to_numpy(float) * 100
            ax = axes[i, j]
            image = ax.imshow(values, cmap="cividis", aspect="auto")
            finite = values[np.isfinite(values)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (0, 1)
            for (a, b), v in np.ndenumerate(values):
                if np.isfinite(v):
                    dark = hi == lo or (v - lo) / (hi - lo) < 0.55  # cividis is dark at the low end
                    ax.text(b, a, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
            ax.set_xticks(range(len(optimizers)), optimizers, fontsize=8)
            ax.set_yticks(range(len(models)), models, fontsize=8)
            ax.set_title(" · ".join(x for x in (r, name) if x), fontsize=9)
            fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return _save(fig, path)


COST_PANELS = [  # column of the groups table, axis label, factor from the stored unit
    ("train_time_s_mean", "train time per run (h)", 1 / 3600),
    ("peak_mem_bytes_max", "peak device memory (GiB)", 1 / 2**30),
    ("energy_j_mean", "GPU energy per run (kWh)", 1 / 3.6e6),
]


HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "--"]


def _grouped_bars(ax, table: pd.DataFrame, styles: dict, index: str, value: str, positions: list) -> None:
    """One bar per strategy (the `styles` keys) at each of `positions` (values of column `index`);
    random in grey, each strategy with its own hatch so the bars read in black and white too."""
    width = 0.8 / len(styles)
    for k, (strategy, st) in enumerate(styles.items()):
        heights = table[table["strategy"] == strategy].set_index(index)[value].reindex(positions)
        ax.bar(
            np.arange(len(positions)) + (k - (len(styles) - 1) / 2) * width,
            heights.to_numpy(float),
            width,
            color=st["color"] if strategy != "random" else "0.35",
            hatch=HATCHES[k % len(HATCHES)],
            edgecolor="white",
            linewidth=0.4,
            label=str(strategy),
        )


def compute_cost(groups: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Train time, peak memory and energy per model x optimizer, a bar per strategy; only the
    measures that some run recorded (CPU runs have no memory or energy counter)."""
    gpu_hours = groups["gpu_hours"].sum() if len(groups) else 0.0
    title = f"Compute cost (GPU-hours of the sweep so far: {gpu_hours:.2f})"
    panels = [p for p in COST_PANELS if p[0] in groups and groups[p[0]].notna().any()]
    if not panels:
        return _placeholder(path, title, "no cost recorded yet")
    t = groups.assign(_x=_label(groups, ["dataset", *_extra(keys), "model", "optimizer"]).str.replace(" · ", "\n"))
    xs = sorted(t["_x"].unique())
    styles = _styles(t["strategy"])
    size = (max(4.5, 0.55 * len(xs) * max(1, len(styles)) ** 0.5 + 1.5), 2.6 * len(panels) + 0.8)
    fig, axes = _figure(title, size, len(panels), 1, sharex=True)
    axes = axes[:, 0]
    for ax, (column, label, factor) in zip(axes, panels):
        _grouped_bars(ax, t.assign(_v=t[column] * factor), styles, "_x", "_v", xs)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        ax.tick_params(labelsize=8)
    axes[-1].set_xticks(np.arange(len(xs)), xs, fontsize=7)
    _legend(fig, axes[0].get_legend_handles_labels()[0], "strategy")
    return _save(fig, path)


def queried_class_histogram(classes: pd.DataFrame, keys: list[str], path: Path) -> Path:
    """Share of each class among the queried samples, a bar per strategy, against uniform."""
    title = "Classes of the queried samples (cycles 2+, all models, optimizers and trials)"
    if classes.empty:
        return _placeholder(path, title, "no queried_class_counts recorded yet")
    t = classes.assign(_row=_label(classes, ["dataset", *_extra(keys)]))
    row_values = sorted(t["_row"].unique())
    n_classes = t["class"].nunique()
    styles = _styles(t["strategy"])
    size = (max(5.0, 0.35 * n_classes * len(styles) + 1.5), 2.8 * len(row_values) + 0.9)
    fig, axes = _figure(title, size, len(row_values), 1)
    axes = axes[:, 0]
    for ax, r in zip(axes, row_values):
        sub = t[t["_row"] == r]
        classes_here = sorted(sub["class"].unique())
        _grouped_bars(ax, sub.assign(_pct=sub["fraction"] * 100), styles, "class", "_pct", classes_here)
        ax.axhline(100 / len(classes_here), color="black", linestyle=":", linewidth=1, label="uniform")
        ax.set_xticks(np.arange(len(classes_here)), [str(c) for c in classes_here], fontsize=8)
        ax.set_xlabel("class", fontsize=9)
        ax.set_ylabel("share of queried (%)", fontsize=9)
        ax.set_title(r, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
    _legend(fig, axes[0].get_legend_handles_labels()[0], ncols=7)
    return _save(fig, path)


# The report's figures, in order: file name, caption, function, the table it is drawn from.
FIGURES: list[tuple[str, str, Callable, str]] = [
    (
        "accuracy_by_model.png",
        "Test accuracy against labelled samples, a panel per model, a line per optimizer; bands: 95% CI over trials.",
        accuracy_by_model,
        "summary",
    ),
    (
        "accuracy_by_optimizer.png",
        "Test accuracy against labelled samples, a panel per optimizer, a line per model.",
        accuracy_by_optimizer,
        "summary",
    ),
    (
        "strategies_vs_random.png",
        "Each query strategy against random sampling (black, dashed), per model and optimizer.",
        strategies_vs_random,
        "summary",
    ),
    (
        "gain_over_random.png",
        "Accuracy gain over random, paired by trial, with 95% CI; filled markers: p < 0.05 (paired t-test).",
        gain_over_random,
        "vs_random",
    ),
    (
        "heatmaps.png",
        "Final accuracy and area under the budget curve (AUBC), model x optimizer, one row per strategy.",
        heatmaps,
        "groups",
    ),
    ("macro_f1.png", "Macro-F1 against labelled samples, a panel per model, a line per optimizer.", macro_f1, "summary"),
    (
        "label_efficiency.png",
        "Label efficiency per cycle: accuracy points gained per percent of the pool labelled (cycle 1: over chance).",
        label_efficiency,
        "summary",
    ),
    (
        "compute_cost.png",
        "Compute cost per model x optimizer: train time, peak device memory and energy where recorded.",
        compute_cost,
        "groups",
    ),
    (
        "queried_classes.png",
        "Class distribution of the samples each strategy queried (cycles 2+), against the uniform share.",
        queried_class_histogram,
        "classes",
    ),
]


def draw_all(tables, out_dir: Path) -> list[tuple[Path, str]]:
    """Draw every figure of FIGURES into `out_dir` -> [(path, caption)]."""
    os.makedirs(out_dir, exist_ok=True)
    return [
        (function(getattr(tables, table), tables.keys, out_dir / name), caption) for name, caption, function, table in FIGURES
    ]
