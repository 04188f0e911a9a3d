"""The metrics of docs/METRICS.md as pure functions of tidy DataFrames.

Every table is a vectorised groupby of the cycles table (one row per run x finished cycle).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

RANDOM = "random"
# Diffs closer together than this count as "every diff is equal" (p-value undefined): float
# subtraction makes equal decimal differences differ in the last bits.
EQUAL_TOL = 1e-12
PAIR_COLUMNS = ["n_pairs", "diff_mean", "diff_sd", "diff_ci95", "d_z", "t", "p_value"]


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values, equal to statsmodels' multipletests(method="holm") (a test checks it;
    multipletests runs gc.collect() on every call, too slow for the calibration's thousands of
    families): the i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        steps = (len(ok) - np.arange(len(ok))) * p[order]
        out[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return out


def add_holm(table: pd.DataFrame, by: list[str], col: str = "p_value", out: str = "p_holm") -> pd.DataFrame:
    """`table` with an `out` column: Holm over the rows of each group of `by` (vectorised over the
    groups, the same numbers as `holm` per group); NaN p-values stay NaN and are not counted."""
    table = table.copy()
    table[out] = np.nan
    p = pd.to_numeric(table[col], errors="coerce") if len(table) else table[col]
    ok = p.notna()
    if not ok.any():
        return table
    key = table.loc[ok].groupby(by, observed=True, sort=False, dropna=False).ngroup() if by else pd.Series(0, index=p[ok].index)
    s = pd.DataFrame({"g": key, "p": p[ok].astype(float)}).sort_values(["g", "p"], kind="stable")
    m = s.groupby("g")["p"].transform("size")
    steps = (m - s.groupby("g").cumcount()) * s["p"]
    table.loc[s.index, out] = steps.groupby(s["g"]).cummax().clip(upper=1.0)
    return table


def rows_matching(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The rows of `frame` whose column k equals v for every k: v of `where` (none when a column is missing)."""
    for k, v in where.items():
        if frame.empty or k not in frame:
            return frame.iloc[0:0]
        frame = frame[frame[k] == v]
    return frame


def ci95(std, n):
    """Half-width of the 95% CI of a mean: t(0.975, n - 1) * std / sqrt(n); NaN when n < 2."""
    n = np.asarray(n, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan)) * std / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def paired_table(pairs: pd.DataFrame, by: list[str], col: str = "diff") -> pd.DataFrame:
    """PAIR_COLUMNS of the paired differences `col` per group of `by`, vectorised: n, mean, SD,
    95% CI half-width, Cohen's d_z (mean / SD), t and the two-sided paired t-test p (NaN when
    undefined: fewer than 2 pairs, or every difference equal)."""
    if pairs.empty:
        return pd.DataFrame(columns=[*by, *PAIR_COLUMNS])
    g = pairs.groupby(by, observed=True, sort=True)[col]
    out = g.agg(n_pairs="size", diff_mean="mean", diff_sd="std", lo="min", hi="max").reset_index()
    n = out["n_pairs"].to_numpy(float)
    sd = out["diff_sd"].to_numpy(float)
    undefined = (n < 2) | ((out["hi"] - out["lo"]).to_numpy() <= EQUAL_TOL)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(undefined, np.nan, out["diff_mean"].to_numpy() / (sd / np.sqrt(n)))
        out["diff_ci95"] = ci95(sd, n)
        out["d_z"] = np.where(undefined, np.nan, out["diff_mean"].to_numpy() / sd)
    out["t"] = t
    out["p_value"] = 2 * stats.t.sf(np.abs(t), np.where(n >= 2, n - 1, np.nan))
    return out[[*by, *PAIR_COLUMNS]]


def paired_stats(pairs: pd.DataFrame, by: list[str], col: str = "diff") -> pd.DataFrame:
    """n_pairs, diff_mean, diff_std, diff_ci95 and the two-sided one-sample t-test p-value of
    `col` against 0 per group of `by` (equivalent to a paired t-test of the two sides)."""
    out = paired_table(pairs, by, col).rename(columns={"diff_sd": "diff_std"})
    return out[[*by, "n_pairs", "diff_mean", "diff_std", "diff_ci95", "p_value"]]


def label_efficiency(cycles: pd.DataFrame) -> pd.Series:
    """Accuracy points gained per percent of the pool labelled, per row (cycle).

    `100 * (acc_c - acc_{c-1}) / (100 * (n_c - n_{c-1}) / n_pool)`, with acc_0 = 1 / n_classes
    (n_classes = length of per_class_accuracy or queried_class_counts) and n_0 = 0. NaN when the
    previous cycle of the run is not in the table.
    """
    c = cycles.sort_values(["run_id", "cycle"], kind="stable")
    g = c.groupby("run_id", sort=False)
    prev_cycle = g["cycle"].shift()
    prev_acc = g["test_accuracy"].shift()
    prev_n = g["n_labeled"].shift()
    first = c["cycle"].eq(1)
    n_classes = _list_len(c["per_class_accuracy"]).fillna(_list_len(c["queried_class_counts"]))
    prev_acc = prev_acc.where(~first, 1.0 / n_classes)
    prev_n = prev_n.where(~first, 0)
    known = first | prev_cycle.eq(c["cycle"] - 1)
    gain = 100 * (c["test_accuracy"] - prev_acc)
    share = 100 * (c["n_labeled"] - prev_n) / c["n_pool"]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (gain / share).where(known & share.ne(0))
    return value.reindex(cycles.index).rename("label_efficiency")


def summary_table(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """summary.csv: per group and n_labeled, n_trials and mean/std/ci95 of accuracy and macro-F1
    (plus the mean label efficiency and its ci95, for the figures)."""
    by = [*keys, "n_labeled"]
    agg = dict(
        n_trials=("test_accuracy", "size"),
        acc_mean=("test_accuracy", "mean"),
        acc_std=("test_accuracy", "std"),
        f1_mean=("test_macro_f1", "mean"),
        f1_std=("test_macro_f1", "std"),
        cycle=("cycle", "max"),
    )
    if "label_efficiency" in cycles:
        agg.update(le_mean=("label_efficiency", "mean"), le_std=("label_efficiency", "std"), le_n=("label_efficiency", "count"))
    out = cycles.groupby(by, sort=True, observed=True).agg(**agg).reset_index()
    out["acc_ci95"] = ci95(out["acc_std"], out["n_trials"])
    out["f1_ci95"] = ci95(out["f1_std"], out["n_trials"])
    cols = [*by, "n_trials", "acc_mean", "acc_std", "acc_ci95", "f1_mean", "f1_std", "f1_ci95", "cycle"]
    if "le_mean" in out:
        out["le_ci95"] = ci95(out["le_std"], out["le_n"])
        cols += ["le_mean", "le_ci95"]
    return out[cols]


def aubc(cycles: pd.DataFrame) -> pd.Series:
    """Per run_id: trapezoidal area under acc against n_labeled over the finished cycles,
    divided by (last n_labeled - first n_labeled); NaN with fewer than 2 cycles."""
    c = cycles.sort_values(["run_id", "n_labeled"], kind="stable")
    g = c.groupby("run_id", sort=False)
    width = c["n_labeled"] - g["n_labeled"].shift()
    height = (c["test_accuracy"] + g["test_accuracy"].shift()) / 2
    area = (width * height).groupby(c["run_id"], sort=True).sum(min_count=1)
    span = g["n_labeled"].max() - g["n_labeled"].min()
    return (area / span.where(span > 0)).rename("aubc")


def random_targets(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per dataset, model, optimizer (and extra axes): the mean acc of the random runs at the
    largest n_labeled reached by all of them -> columns target_n, target_acc."""
    tkeys = [k for k in keys if k != "strategy"]
    rnd = cycles[cycles["strategy"] == RANDOM]
    if rnd.empty:
        return pd.DataFrame(columns=[*tkeys, "target_n", "target_acc"]).astype({"target_n": float, "target_acc": float})
    n_runs = rnd.groupby(tkeys, observed=True)["run_id"].nunique().rename("n_runs")
    at = rnd.groupby([*tkeys, "n_labeled"], observed=True).agg(n=("run_id", "nunique"), target_acc=("test_accuracy", "mean"))
    at = at.reset_index().merge(n_runs.reset_index(), on=tkeys)
    at = at[at["n"] == at["n_runs"]].sort_values("n_labeled").groupby(tkeys, observed=True).tail(1)
    return at.rename(columns={"n_labeled": "target_n"})[[*tkeys, "target_n", "target_acc"]].reset_index(drop=True)


def labels_to_target(cycles: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per run_id: the smallest n_labeled at which the run's curve (linear between consecutive
    cycles) first reaches its random target (see `random_targets`); NaN when it never does or
    there is no random run."""
    tkeys = [k for k in keys if k != "strategy"]
    c = cycles.sort_values(["run_id", "n_labeled"], kind="stable")
    g = c.groupby("run_id", sort=False)
    c = c.assign(prev_n=g["n_labeled"].shift(), prev_acc=g["test_accuracy"].shift())
    c = c.merge(random_targets(cycles, keys), on=tkeys, how="left")
    first = c[c["test_accuracy"] >= c["target_acc"]].groupby("run_id", sort=False).head(1)
    # Every earlier point is below the target, so the segment into `first` crosses it.
    crossing = first["prev_n"] + (first["target_acc"] - first["prev_acc"]) * (first["n_labeled"] - first["prev_n"]) / (
        first["test_accuracy"] - first["prev_acc"]
    )
    value = crossing.where(first["prev_n"].notna(), first["n_labeled"].astype(float))
    out = pd.Series(value.to_numpy(), index=first["run_id"].to_numpy(), name="labels_to_target")
    return out.reindex(sorted(c["run_id"].unique()))


def runs_table(cycles: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """runs.csv: one row per run (runs without a finished cycle included, with NaN metrics)."""
    c = cycles.sort_values(["run_id", "n_labeled"], kind="stable")
    g = c.groupby("run_id", sort=True)
    last = g.tail(1).set_index("run_id")
    any_missing_energy = c["energy_j"].isna().groupby(c["run_id"], sort=True).any()
    energy = g["energy_j"].sum(min_count=1).where(~any_missing_energy)
    per_run = pd.DataFrame(
        {
            "cycles_done": g.size(),
            "final_n_labeled": last["n_labeled"],
            "final_acc": last["test_accuracy"],
            "final_f1": last["test_macro_f1"],
            "aubc": aubc(c),
            "labels_to_target": labels_to_target(c, keys),
            "train_time_s": g["train_time_s"].sum(min_count=1),
            "select_time_s": g["select_time_s"].sum(min_count=1),
            "eval_time_s": g["eval_time_s"].sum(min_count=1),
            # the fits that chose tuned values (rows of cycles that tuned; NaN for a run that never tunes)
            "tune_time_s": g["tune_time_s"].sum(min_count=1) if "tune_time_s" in c else np.nan,
            "peak_mem_bytes": g["peak_mem_bytes"].max(),
            "energy_j": energy,
            "device": last["device"],
            "diverged_cycles": diverged_flags(c).groupby(c["run_id"], sort=True).sum(),
        }
    )
    out = runs.merge(per_run, left_on="run_id", right_index=True, how="left")
    out["cycles_done"] = out["cycles_done"].fillna(0).astype("int64")
    out["diverged_cycles"] = out["diverged_cycles"].fillna(0).astype("int64")
    cols = [
        "run_id",
        *keys,
        "trial",
        "cycles_done",
        "done",
        "final_acc",
        "final_f1",
        "aubc",
        "labels_to_target",
        "train_time_s",
        "peak_mem_bytes",
        "energy_j",
        "status",
        "cycles_expected",
        "final_n_labeled",
        "select_time_s",
        "eval_time_s",
        "device",
        "diverged_cycles",
        "tune_time_s",
    ]
    return out[cols].sort_values([*keys, "trial", "run_id"], kind="stable").reset_index(drop=True)


RUN_SECONDS = ("train_time_s", "select_time_s", "eval_time_s", "tune_time_s")


def run_seconds(runs_tbl: pd.DataFrame) -> pd.Series:
    """Each run's seconds on its device: train + select + eval, and tuning's fits where it tuned
    (NaN only when none is known)."""
    return runs_tbl[[c for c in RUN_SECONDS if c in runs_tbl]].sum(axis=1, min_count=1)


def diverged_flags(cycles: pd.DataFrame) -> pd.Series:
    """Per cycle row: whether its training diverged (analysis.load makes `diverged` a flag)."""
    if "diverged" not in cycles:
        return pd.Series(False, index=cycles.index)
    return cycles["diverged"].fillna(False).astype(bool)


def with_run_counts(summary: pd.DataFrame, runs: pd.DataFrame, cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """summary.csv's per-group run counts: `n_left_out`, runs of the group the report left out
    (analysis.load: another config, rows of another run, a gap); `n_diverged`, runs whose training
    loss stopped being finite in some cycle (counted in every table with the accuracy they reached)."""
    left = runs[runs["status"].eq("left out")].groupby(keys, observed=True, sort=True).size().rename("n_left_out")
    diverged = cycles[diverged_flags(cycles)].groupby(keys, observed=True, sort=True)["run_id"].nunique()
    out = summary.merge(left.reset_index(), on=keys, how="left")
    out = out.merge(diverged.rename("n_diverged").reset_index(), on=keys, how="left")
    for name in ("n_left_out", "n_diverged"):
        out[name] = out[name].fillna(0).astype("int64")
    # Groups whose every run was left out have no row to count them in: summary.csv adds one for
    # each (summary_csv), n_trials 0, so that no left-out run goes uncounted.
    unreported = left.reset_index().merge(out[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    out.attrs["unreported"] = unreported[unreported["_merge"] == "left_only"].drop(columns="_merge").to_dict("records")
    return out


def summary_csv(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """summary.csv: the summary table, and a row (n_trials 0, no budget) per group whose runs were all left out."""
    records = summary.attrs.get("unreported")
    if not records:
        return summary
    extra = pd.DataFrame(records).assign(n_trials=0, n_diverged=0)
    return pd.concat([summary, extra], ignore_index=True)[summary.columns]


def vs_random_table(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """vs_random.csv: per group of a non-random strategy and n_labeled, statistics of the paired
    diff acc(run) - acc(random run with the same dataset, model, optimizer, trial, n_labeled);
    only pairs where both cycles exist count."""
    pair_on = [k for k in keys if k != "strategy"] + ["trial", "n_labeled"]
    cols = [*pair_on, "test_accuracy"]
    rnd = cycles.loc[cycles["strategy"] == RANDOM, cols]
    other = cycles.loc[cycles["strategy"] != RANDOM, [*cols, "strategy"]]
    pairs = other.merge(rnd, on=pair_on, suffixes=("", "_random"))
    pairs["diff"] = pairs["test_accuracy"] - pairs["test_accuracy_random"]
    # Holm over the rows of one dataset x strategy (README, Results layout)
    return add_holm(paired_stats(pairs, [*keys, "n_labeled"]), ["dataset", "strategy"])


def compute_table(runs_tbl: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """compute.csv: per group and device (GPU model, or cpu), the runs' mean train, select and eval
    seconds, peak memory and energy, and device-hours: timings are compared within one device only."""
    r = runs_tbl[runs_tbl["cycles_done"] > 0].assign(device=lambda d: d["device"].fillna("unknown").astype(str))
    seconds = run_seconds(r)
    by = [*keys, "device"]
    out = (
        r.assign(device_hours=seconds / 3600)
        .groupby(by, observed=True, sort=True)
        .agg(
            n_runs=("run_id", "size"),
            train_time_s_mean=("train_time_s", "mean"),
            select_time_s_mean=("select_time_s", "mean"),
            eval_time_s_mean=("eval_time_s", "mean"),
            peak_mem_bytes_max=("peak_mem_bytes", "max"),
            energy_j_mean=("energy_j", "mean"),
            device_hours=("device_hours", "sum"),
            tune_time_s_mean=("tune_time_s", "mean"),
        )
        .reset_index()
    )
    return out


def group_table(runs_tbl: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: final accuracy, AUBC, labels_to_target and cost over the `n_final` runs that
    reached the group's largest budget (the done runs, once a group has finished); n_runs, n_done
    and the GPU/CPU hours count every run of the group with a finished cycle."""
    r = runs_tbl[runs_tbl["cycles_done"] > 0].copy()
    top = r.groupby(keys, observed=True)["final_n_labeled"].transform("max")
    full = r[r["final_n_labeled"] == top]
    r_gpu = r["device"].notna() & r["device"].ne("cpu")
    seconds = run_seconds(r)
    totals = pd.DataFrame(
        {
            "gpu_hours": seconds.where(r_gpu).groupby([r[k] for k in keys], observed=True).sum() / 3600,
            "cpu_hours": seconds.where(~r_gpu).groupby([r[k] for k in keys], observed=True).sum() / 3600,
        }
    )
    out = full.groupby(keys, observed=True).agg(
        n_final=("run_id", "size"),
        final_n_labeled=("final_n_labeled", "max"),
        final_acc_mean=("final_acc", "mean"),
        final_acc_std=("final_acc", "std"),
        final_f1_mean=("final_f1", "mean"),
        aubc_mean=("aubc", "mean"),
        aubc_std=("aubc", "std"),
        aubc_n=("aubc", "count"),
        labels_to_target_mean=("labels_to_target", "mean"),
        labels_to_target_n=("labels_to_target", "count"),
        train_time_s_mean=("train_time_s", "mean"),
        peak_mem_bytes_max=("peak_mem_bytes", "max"),
        energy_j_mean=("energy_j", "mean"),
    )
    # Timings of runs on different GPU models are never pooled: compute.csv has them per device.
    mixed = full.groupby(keys, observed=True)["device"].nunique() > 1
    out.loc[mixed[mixed].index, "train_time_s_mean"] = np.nan
    out["n_runs"] = r.groupby(keys, observed=True)["run_id"].size()
    out["n_done"] = r.groupby(keys, observed=True)["done"].sum()
    out = out.join(totals).reset_index()
    out["final_acc_ci95"] = ci95(out["final_acc_std"], out["n_final"])
    out["aubc_ci95"] = ci95(out["aubc_std"], out["aubc_n"])
    cols = [
        *keys,
        "n_runs",
        "n_done",
        "n_final",
        "final_n_labeled",
        "final_acc_mean",
        "final_acc_ci95",
        "final_f1_mean",
        "aubc_mean",
        "aubc_ci95",
        "labels_to_target_mean",
        "labels_to_target_n",
        "train_time_s_mean",
        "peak_mem_bytes_max",
        "energy_j_mean",
        "gpu_hours",
        "cpu_hours",
    ]
    return out[cols]


def optimizer_ranking(cycles: pd.DataFrame, summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per model (and dataset, strategy, extra axes) and n_labeled: the optimizer with the best
    mean accuracy, the runner-up, and the paired (by trial) test of best - runner-up."""
    gk = [k for k in keys if k != "optimizer"] + ["n_labeled"]
    cols = [*gk, "best", "best_acc", "runner_up", "runner_up_acc", "n_pairs", "diff_mean", "diff_ci95", "p_value"]
    ranked = summary.sort_values([*gk, "acc_mean", "optimizer"], ascending=[True] * len(gk) + [False, True], kind="stable")
    ranked = ranked.assign(rank=ranked.groupby(gk, observed=True).cumcount())
    top = ranked[[*gk, "optimizer", "acc_mean"]]
    best = top[ranked["rank"] == 0].rename(columns={"optimizer": "best", "acc_mean": "best_acc"})
    second = top[ranked["rank"] == 1].rename(columns={"optimizer": "runner_up", "acc_mean": "runner_up_acc"})
    table = best.merge(second, on=gk, how="inner")
    if table.empty:
        return pd.DataFrame(columns=cols)
    acc = cycles[[*gk, "optimizer", "trial", "test_accuracy"]]
    a = table.merge(acc.rename(columns={"optimizer": "best"}), on=[*gk, "best"])
    pairs = a.merge(acc.rename(columns={"optimizer": "runner_up", "test_accuracy": "acc_2"}), on=[*gk, "runner_up", "trial"])
    pairs["diff"] = pairs["test_accuracy"] - pairs["acc_2"]
    tested = paired_stats(pairs, gk)
    return table.merge(tested, on=gk, how="left")[cols]


def queried_classes(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per dataset (and extra axes), strategy and class: samples queried in cycles 2+ (cycle 1 is
    the initial set), summed over models, optimizers and trials, and their fraction."""
    by = [k for k in keys if k not in ("model", "optimizer")]
    cols = [*by, "class", "count", "fraction"]
    c = cycles[cycles["cycle"] >= 2]
    if c.empty or c["queried_class_counts"].isna().all():
        c = cycles  # only the initial sets exist yet
    lengths = _list_len(c["queried_class_counts"])
    if lengths.isna().all():
        return pd.DataFrame(columns=cols)
    c = c[lengths == lengths.mode().iloc[0]]
    counts = pd.DataFrame(np.array(c["queried_class_counts"].tolist(), dtype=np.int64), index=c.index)
    per = counts.groupby([c[k] for k in by], observed=True).sum()
    per.columns.name = "class"
    long = per.stack().rename("count").reset_index()
    long["fraction"] = long["count"] / long.groupby(by, observed=True)["count"].transform("sum")
    return long[cols]


def _list_len(series: pd.Series) -> pd.Series:
    return series.map(lambda v: len(v) if isinstance(v, list) else np.nan).astype(float)
