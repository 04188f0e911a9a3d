"""Assembling a sweep's report under <sweep_dir>/report/: the CSV tables listed in README
(Results layout),
results.json for the group's scripts, Markdown/LaTeX tables, figures, report.md and report.html.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from analysis import curves as curves_mod
from analysis import figures, findings, headline, metrics, planning, questions, render
from analysis.load import LIST_FIELDS, OPTIONAL_NUMBERS, ExpectedRun, SweepData, load_sweep_dir
from analysis.write import write_text

CSV_TABLES = (
    "cycles",
    "summary",
    "runs",
    "vs_random",
    "groups",
    "ranking",
    "classes",
    "optimizers",
    "models",
    "anova",
    "gains",
    "questions",
    "interaction",
    "power",
)
CSV_NAMES = {"ranking": "optimizer_ranking", "classes": "queried_classes"}  # file stem when not the table name
INLINE_ROWS = 2000  # tables longer than this are linked from report.html, not folded into it


@dataclass
class Tables:
    """Every table of the report, each a DataFrame computed from `cycles`."""

    data: SweepData
    cycles: pd.DataFrame  # cycles.csv: one row per run x finished cycle, with label_efficiency
    summary: pd.DataFrame  # summary.csv: per group and n_labeled
    runs: pd.DataFrame  # runs.csv: per run
    vs_random: pd.DataFrame  # vs_random.csv: per non-random group and n_labeled, paired by trial
    groups: pd.DataFrame  # groups.csv: per group, final accuracy, AUBC and cost
    ranking: pd.DataFrame  # optimizer_ranking.csv: best optimizer per model and budget
    classes: pd.DataFrame  # queried_classes.csv: class shares of the queried samples per strategy
    # The headline (analysis.headline), from the finished runs:
    grid: pd.DataFrame = field(default_factory=pd.DataFrame)  # per group: n, AUBC and final accuracy, flag
    optimizers: pd.DataFrame = field(default_factory=pd.DataFrame)  # optimizers.csv: paired AUBC tests, Holm
    models: pd.DataFrame = field(default_factory=pd.DataFrame)  # models.csv: the same between models
    anova: pd.DataFrame = field(default_factory=pd.DataFrame)  # anova.csv: two-way ANOVA of AUBC
    gains: pd.DataFrame = field(default_factory=pd.DataFrame)  # gains.csv: AUBC gain over random, Holm
    # The claims (analysis.questions) and trial planning (analysis.power):
    questions: pd.DataFrame = field(default_factory=pd.DataFrame)  # questions.csv: one row per unit x question
    interaction: pd.DataFrame = field(default_factory=pd.DataFrame)  # interaction.csv: blocked F-test per strategy
    power: pd.DataFrame = field(default_factory=pd.DataFrame)  # power.csv: trials needed for 80% power
    gains_tuned_dropped: int = 0  # gain pairs left out: the two runs chose different tuned hyper-parameters

    @property
    def keys(self) -> list[str]:
        return self.data.keys

    def status_counts(self) -> dict:
        status = self.runs["status"].value_counts()
        expected = self.runs["cycles_expected"]
        return {
            "total": len(self.runs),
            "done": int(status.get("done", 0)),
            "in progress": int(status.get("in progress", 0)),
            "missing": int(status.get("missing", 0)),
            "cycles_done": int(self.runs["cycles_done"].sum()),
            "cycles_expected": int(expected.sum()) if len(expected) and expected.notna().all() else 0,
        }


def compute_tables(data: SweepData) -> Tables:
    """Every table of the report from what `load_sweep_dir` read."""
    keys = data.keys
    cycles = data.cycles.assign(label_efficiency=metrics.label_efficiency(data.cycles))
    summary = metrics.summary_table(cycles, keys)
    runs = metrics.runs_table(cycles, data.runs, keys)
    claims = questions.answer(runs.merge(tuned_signature(cycles), on="run_id", how="left"), keys)
    tables = Tables(
        data=data,
        cycles=cycles,
        summary=summary,
        runs=runs,
        vs_random=metrics.vs_random_table(cycles, keys),
        groups=metrics.group_table(runs, keys),
        ranking=metrics.optimizer_ranking(cycles, summary, keys),
        classes=metrics.queried_classes(cycles, keys),
        grid=headline.grid(runs, keys),
        optimizers=claims.optimizers,
        models=claims.models,
        anova=headline.anova(runs, keys),
        gains=claims.gains,
        questions=claims.questions,
        interaction=claims.interaction,
        gains_tuned_dropped=claims.gains_tuned_dropped,
    )
    tables.power = planning.power_table(tables)
    return tables


def tuned_signature(cycles: pd.DataFrame) -> pd.DataFrame:
    """Per run: `tuned`, the hyper-parameters its cycles chose (tuned.* columns) as one string;
    None when the run tuned nothing. Gains over random pair only runs with equal signatures."""
    cols = sorted(c for c in cycles.columns if str(c).startswith("tuned."))
    if not cols:
        return pd.DataFrame({"run_id": cycles["run_id"].unique(), "tuned": None})
    c = cycles.sort_values(["run_id", "cycle"], kind="stable")
    text = c[cols].astype(str).agg(",".join, axis=1)
    sig = text.groupby(c["run_id"], sort=True).agg("|".join)
    return sig.rename("tuned").reset_index()


def expected_runs(sweep) -> list[ExpectedRun]:
    return [ExpectedRun(s.run_id, s.model, s.optimizer, s.strategy, int(s.trial)) for s in sweep.runs()]


def load(sweep_dir: str | os.PathLike, sweep=None) -> SweepData:
    """Read a sweep directory; with the sweep (al_core.config.Sweep) the expected runs are known."""
    if sweep is None:
        return load_sweep_dir(sweep_dir)
    grid = sweep.raw.get("grid") or {}
    dataset = sweep.raw.get("dataset") or {}
    data = load_sweep_dir(
        sweep_dir,
        expected=expected_runs(sweep),
        extra_axes=[a for a in grid if a not in ("model", "optimizer", "strategy", "trial")],
        cycles_expected=int(sweep.al.cycles),
        dataset=dataset.get("name") if isinstance(dataset, dict) else None,
    )
    data.config, data.config_source = sweep.raw, f"sweep file {getattr(sweep, 'path', '') or sweep.name}"
    return data


def build_report(sweep_dir: str | os.PathLike, sweep=None, command: Optional[str] = None, timings: Optional[dict] = None) -> Path:
    """Write the whole report of a sweep to `<sweep_dir>/report/` and return report.html's path.

    Parameters
    ----------
    sweep : the loaded sweep (`al_core.config.load_sweep`); without it the runs are those found.
    command : the command that reproduces the report (default: the --results form).
    timings : when a dict is given, the seconds of each phase are stored in it.

    Example
    -------
    >>> build_report("results/demo")  # doctest: +SKIP
    PosixPath('results/demo/report/report.html')
    """
    start = time.perf_counter()
    data = load(sweep_dir, sweep)
    loaded = time.perf_counter()
    tables = compute_tables(data)
    if timings is not None:
        timings.update(load=loaded - start, tables=time.perf_counter() - loaded)
    return write_report(tables, command, timings)


def write_report(
    tables: Tables, command: Optional[str] = None, timings: Optional[dict] = None, curves: Optional[str] = None
) -> Path:
    """Write the tables, figures, report.md and report.html of `tables`; return report.html's path.
    `curves` chooses the runs of the training-curves figure (analysis.curves.select)."""
    sweep_dir = tables.data.sweep_dir
    report_dir = sweep_dir / "report"
    for sub in ("tables", "figures"):
        (report_dir / sub).mkdir(parents=True, exist_ok=True)
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[name] = now - clock[0]
        clock[0] = now

    write_tables(tables, report_dir)
    lap("write_tables")
    drawn = figures.draw_all(tables, report_dir / "figures")
    epochs = curves_mod.load_epochs(sweep_dir, tables.runs, tables.keys)
    if len(epochs):
        write_text(report_dir / "epochs.csv", epochs.to_csv(index=False))
        drawn.append(
            (
                curves_mod.training_curves(epochs, report_dir / "figures" / "training_curves.png", curves),
                "Training loss, training accuracy and learning rate per epoch (from each run's epochs.jsonl); "
                "grey lines: a new cycle (more labels). Choose the runs with --curves RUN_ID | GROUP | STRATEGY.",
            )
        )
    lap("figures")
    command = command or f"python -m analysis.report --results {sweep_dir}"
    top = headline_section(tables, report_dir)
    blocks = report_blocks(tables, drawn, report_dir, command, top)
    write_text(
        report_dir / "summary.md",
        render.to_markdown(
            [("h1", f"Summary: {sweep_dir.name}"), ("p", findings.completeness_line(tables) + "."), *top], report_dir
        ),
    )
    write_text(report_dir / "report.md", render.to_markdown(blocks, report_dir))
    path = write_text(report_dir / "report.html", render.to_html(blocks, f"Active-learning report: {sweep_dir.name}", report_dir))
    lap("render")
    return path


# ---------------------------------------------------------------------------------------------
def cycles_csv_frame(cycles: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """cycles.csv: the scalar fields of a cycles.jsonl row (README, Results layout) (and any extra scalar field) + label_efficiency."""
    first = [
        "run_id",
        *keys,
        "trial",
        "cycle",
        "n_labeled",
        "n_pool",
        "test_accuracy",
        "test_macro_f1",
        *OPTIONAL_NUMBERS,
        "device",
        "label_efficiency",
    ]
    rest = [c for c in cycles.columns if c not in first and c not in LIST_FIELDS and _is_scalar_column(cycles[c])]
    out = cycles[first + rest].copy()
    out["peak_mem_bytes"] = out["peak_mem_bytes"].round().astype("Int64")
    return out


def _is_scalar_column(column: pd.Series) -> bool:
    values = column.dropna()
    return values.empty or not isinstance(values.iloc[0], (list, dict, tuple))


def results_json(cycles: pd.DataFrame, keys: list[str]) -> dict[str, dict]:
    """The layout of the group's first scripts, one dict per file name:
    {optimizer: {model: {"labeled_sizes": [[...] per trial], "accuracies": [[...] per trial]}}},
    accuracies in percent; results.json, or results_<strategy>.json when there are several
    strategies (and further suffixes for several datasets or extra-axis values)."""
    split = [k for k in keys if k not in ("model", "optimizer") and cycles[k].nunique() > 1]
    c = cycles.sort_values([*keys, "trial", "n_labeled"], kind="stable").assign(acc_pct=cycles["test_accuracy"] * 100)
    per_run = (
        c.groupby([*keys, "trial"], sort=True, observed=True)
        .agg(labeled_sizes=("n_labeled", list), accuracies=("acc_pct", list))
        .reset_index()
    )
    files: dict[str, dict] = {}
    for d in per_run.to_dict("records"):  # records, not itertuples: axis names such as train.width
        name = "results" + "".join(f"_{d[k]}" for k in split) + ".json"
        entry = (
            files.setdefault(name, {})
            .setdefault(d["optimizer"], {})
            .setdefault(d["model"], {"labeled_sizes": [], "accuracies": []})
        )
        entry["labeled_sizes"].append([int(v) for v in d["labeled_sizes"]])
        entry["accuracies"].append([float(v) for v in d["accuracies"]])
    return files or {"results.json": {}}


DISPLAY = {  # table -> (formatter, caption)
    "summary": (render.display_summary, "Test accuracy and macro-F1 per group and budget (mean ± 95% CI over trials)."),
    "runs": (render.display_runs, "Per run: final accuracy, AUBC, labels to reach random's final accuracy, and cost."),
    "vs_random": (
        render.display_vs_random,
        "Accuracy gain over random, paired by trial (mean ± 95% CI, two-sided paired t-test).",
    ),
    "groups": (
        render.display_groups,
        "Per group at its largest budget: final accuracy, AUBC (mean ± 95% CI), labels to target, cost.",
    ),
    "ranking": (
        render.display_ranking,
        "Best optimizer per model and budget against the runner-up (paired by trial; descriptive: both are chosen from the same data, so p is no test of them; the claims are in optimizers.csv).",
    ),
    "optimizers": (
        render.display_pairs,
        "AUBC differences between optimizers per model, paired by trial (two-sided paired t-test; significant: Holm over the optimizer question's pairs).",
    ),
    "models": (
        render.display_pairs,
        "AUBC differences between models per optimizer, paired by trial (two-sided paired t-test; significant: Holm over the model question's pairs).",
    ),
}


def write_tables(tables: Tables, report_dir: Path) -> None:
    keys = tables.keys
    for name in CSV_TABLES:
        frame = getattr(tables, name)
        if name == "cycles":
            frame = cycles_csv_frame(frame, keys)
        write_text(report_dir / f"{CSV_NAMES.get(name, name)}.csv", frame.to_csv(index=False))
    for name, payload in results_json(tables.cycles, keys).items():
        write_text(report_dir / name, json.dumps(payload) + "\n")
    for name, (formatter, caption) in DISPLAY.items():
        shown = formatter(getattr(tables, name), keys)
        stem = CSV_NAMES.get(name, name)
        write_text(report_dir / "tables" / f"{stem}.md", f"{caption}\n\n" + render.markdown_table(shown))
        write_text(report_dir / "tables" / f"{stem}.tex", render.latex_table(shown, caption, f"tab:{stem}"))
    from analysis.module_effect import write_module_effect  # learning-loss sweeps: the module's own effect

    write_module_effect(tables, report_dir)


# ---------------------------------------------------------------------------------------------
def headline_section(tables: Tables, report_dir: Path) -> list[tuple]:
    """The headline blocks (analysis.headline) with the compact figure of the gains over random and,
    when runs kept their epochs, the training curves of one group."""
    blocks = headline.headline_blocks(tables)
    if len(tables.gains):
        path = figures.aubc_gain(tables.gains, tables.keys, report_dir / "figures" / "aubc_gain.png")
        blocks.append(
            (
                "figure",
                path,
                "AUBC gain over random per model x optimizer, paired by trial (mean, 95% CI; "
                "filled: significant after Holm; no bar: fewer than 3 pairs).",
            )
        )
    return blocks


def report_blocks(
    tables: Tables, drawn: list[tuple[Path, str]], report_dir: Path, command: str, top: Optional[list[tuple]] = None
) -> list[tuple]:
    """The report as a list of blocks (see render): headline, completeness, findings, tables, figures, config."""
    keys = tables.keys
    blocks: list[tuple] = [
        ("h1", f"Active-learning report: {tables.data.sweep_dir.name}"),
        ("p", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {tables.data.sweep_dir}."),
    ]
    blocks += [("p", findings.completeness_line(tables) + "."), *(top or [])]

    blocks += [("h2", "Completeness"), ("p", findings.completeness_line(tables) + ".")]
    if tables.data.n_unexpected:
        blocks.append(
            ("p", f"{tables.data.n_unexpected} run directories under runs/ are not part of this sweep's grid and are left out.")
        )
    unfinished = tables.runs[tables.runs["status"] != "done"]
    if len(unfinished):
        shown = render.display_runs(unfinished.head(50), keys)[["run", "status", "cycles"]]
        note = f" (the first 50 of {len(unfinished)})" if len(unfinished) > 50 else ""
        blocks += [
            (
                "p",
                f"Runs not finished{note}: in-progress runs count with the cycles they finished; missing runs have not started.",
            ),
            ("table", shown),
        ]

    blocks += [("h2", "Findings"), ("ul", findings.findings(tables))]

    blocks += [
        ("h2", "Tables"),
        ("p", "Accuracies in percent; ± is the half-width of the 95% confidence interval (Student's t over trials)."),
    ]
    final = tables.summary[
        tables.summary["n_labeled"] == tables.summary.groupby(keys, observed=True)["n_labeled"].transform("max")
    ]
    blocks += [("p", "Accuracy at each group's largest budget:"), ("table", render.display_summary(final, keys))]
    blocks += [("p", DISPLAY["groups"][1]), ("table", render.display_groups(tables.groups, keys))]
    if len(tables.vs_random):
        blocks += [
            ("p", "Gain over random at each group's largest paired budget:"),
            ("table", render.display_vs_random(findings.final_vs_random(tables), keys)),
        ]
    for name in ("summary", "vs_random", "ranking", "runs"):
        frame = getattr(tables, name)
        if 0 < len(frame) <= INLINE_ROWS:
            blocks.append(
                ("details", f"Full table: {CSV_NAMES.get(name, name)} ({len(frame)} rows)", DISPLAY[name][0](frame, keys))
            )
    files = [(f"{CSV_NAMES.get(n, n)}.csv", f"{CSV_NAMES.get(n, n)}.csv") for n in CSV_TABLES]
    files += [
        (f"tables/{CSV_NAMES.get(n, n)}.{ext}", f"tables/{CSV_NAMES.get(n, n)}.{ext}") for n in DISPLAY for ext in ("md", "tex")
    ]
    blocks += [("p", "All tables (accuracies in the CSV files are fractions):"), ("files", files)]

    blocks.append(("h2", "Figures"))
    blocks += [("figure", path, caption) for path, caption in drawn]

    blocks.append(("h2", "Configuration"))
    if tables.data.config:
        blocks += [("p", f"From the {tables.data.config_source}."), ("pre", _config_text(tables.data.config))]
    else:
        blocks.append(("p", "No configuration found (no readable run.json)."))
    blocks += [("h2", "How to reproduce"), ("p", f"Regenerate this report with: {command}")]
    return blocks


def _config_text(config: dict) -> str:
    try:
        import yaml

        return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    except Exception:  # noqa: BLE001 - any config that YAML cannot print is shown as JSON
        return json.dumps(config, indent=2, default=str)
