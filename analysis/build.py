"""Assembling a sweep's report under <sweep_dir>/report/: the CSV tables listed in README
(Results layout),
results.json for the group's scripts, Markdown/LaTeX tables, figures, report.md and report.html.

Every table is declared once, as one `Table` in TABLES: how it is computed, its CSV file, its
Markdown/LaTeX display and its place in the report are all read from there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

import analysis.metrics as metrics
import analysis.render as render
from analysis.curves import load_epochs, training_curves
from analysis.figures import aubc_gain, draw_all
from analysis.findings import completeness_line, final_vs_random, findings
from analysis.headline import anova, grid, headline_blocks
from analysis.load import LIST_FIELDS, OPTIONAL_NUMBERS, ExpectedRun, SweepData, load_sweep_dir
from analysis.module_effect import module_effect
from analysis.planning import power_table
import analysis.decide as decide
from analysis.questions import Answer, answer, unit_keys
from analysis.tuning_edges import edge_blocks, tuning_edges
from analysis.write import write_text

INLINE_ROWS = 2000  # tables longer than this are linked from report.html, not folded into it


class Tables:
    """Every table of the report: one attribute per entry of TABLES (tables.summary, tables.gains, ...),
    each a DataFrame computed from `data`, or None where the sweep has no such table."""

    def __init__(self, data: SweepData):
        self.data = data

    @property
    def keys(self) -> list[str]:
        return self.data.keys

    @cached_property
    def claims(self) -> Answer:
        """The questions' answers (analysis.questions), from the runs and the hyper-parameters they tuned."""
        return answer(self.runs.merge(tuned_signature(self.cycles), on="run_id", how="left"), self.keys)

    @cached_property
    def study(self) -> dict:
        """The primary questions, margin and waves (analysis.decide.settings): the sweep's `analysis:`
        section, else that of the last recorded look, else the defaults."""
        config = self.data.config if self.data.config.get("analysis") else (self.data.looks[-1] if self.data.looks else {})
        grid = self.data.config.get("grid") or {}
        levels = {
            k: list(grid.get(k) or []) or sorted(self.runs[k].astype(str).unique()) for k in ("strategy", "model", "optimizer")
        }
        section = {"analysis": config.get("analysis") or config.get("study")}
        return decide.settings(section, levels["strategy"], len(levels["model"]), len(levels["optimizer"]))

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        """questions.csv: the primary questions with their verdicts (analysis.decide), then the
        secondary ones with theirs."""
        unit = unit_keys(self.keys)
        primary = decide.primary_rows(self.runs, unit, self.study, self.data.looks, self.data.wave)
        families = {"optimizer": self.claims.optimizers, "model": self.claims.models, "gains": self.claims.gains}
        return decide.with_verdicts(self.claims.questions, families, unit, primary, self.study["margin"])

    @property
    def gains_tuned_differ(self) -> int:
        """Gain pairs (kept) whose two runs chose different tuned hyper-parameters."""
        return self.claims.gains_tuned_differ

    def status_counts(self) -> dict:
        status = self.runs["status"].value_counts()
        expected = self.runs["cycles_expected"]
        return {
            "total": len(self.runs),
            "done": int(status.get("done", 0)),
            "in progress": int(status.get("in progress", 0)),
            "missing": int(status.get("missing", 0)),
            "left out": int(status.get("left out", 0)),
            "cycles_done": int(self.runs["cycles_done"].sum()),
            "cycles_expected": int(expected.sum()) if len(expected) and expected.notna().all() else 0,
        }


Formatter = Callable[[pd.DataFrame, list[str]], pd.DataFrame]  # (table, keys) -> another table


@dataclass(frozen=True)
class Table:
    """One table of the report, declared once: adding a table is adding one of these to TABLES."""

    name: str  # the attribute of Tables
    compute: Callable[[Tables], Optional[pd.DataFrame]]  # from the tables before it in TABLES; None: not in this sweep
    stem: str = ""  # file stem of <report>/<stem>.csv and tables/<stem>.md|.tex (default: name)
    csv: bool = True  # written as <stem>.csv
    csv_frame: Optional[Formatter] = None  # what the CSV holds, when not the table itself
    display: Optional[Formatter] = None  # the table for reading: tables/<stem>.md, and .tex when linked
    caption: str = ""  # of the display
    fold: int = 0  # > 0: its place among the full tables folded into report.html
    linked: bool = True  # listed under the report's "All tables" (with a LaTeX display)

    def __post_init__(self):
        object.__setattr__(self, "stem", self.stem or self.name)


def compute_tables(data: SweepData) -> Tables:
    """Every table of the report (TABLES, in order) from what `load_sweep_dir` read."""
    tables = Tables(data)
    for table in TABLES:
        setattr(tables, table.name, table.compute(tables))
    return tables


def tuned_signature(cycles: pd.DataFrame) -> pd.DataFrame:
    """Per run: `tuned`, the hyper-parameters its cycles chose (tuned.* columns) as one string;
    None when the run tuned nothing. Gains over random pair only runs with equal signatures."""
    cols = sorted(c for c in cycles.columns if str(c).startswith("tuned."))
    if not cols:
        return pd.DataFrame({"run_id": cycles["run_id"].unique(), "tuned": None})
    c = cycles.sort_values(["run_id", "cycle"], kind="stable")
    # A hyper-parameter another optimizer tuned and this run did not is missing (NaN): empty text.
    text = c[cols].apply(lambda col: col.map(lambda v: "" if pd.isna(v) else str(v))).agg(",".join, axis=1)
    sig = text.groupby(c["run_id"], sort=True).agg("|".join)
    return sig.rename("tuned").reset_index()


def load(sweep_dir: str | os.PathLike, sweep=None, include_mismatched: bool = False) -> SweepData:
    """Read a sweep directory; with the sweep (al_core.config.Sweep) the expected runs and their
    configs are known, and a run directory recording another config is left out (analysis.load)."""
    if sweep is None:
        return read_study(load_sweep_dir(sweep_dir, include_mismatched=include_mismatched))
    axes = sweep.raw.get("grid") or {}
    dataset = sweep.raw.get("dataset") or {}
    data = load_sweep_dir(
        sweep_dir,
        expected=[ExpectedRun(s.run_id, s.model, s.optimizer, s.strategy, int(s.trial), _config_of(s)) for s in sweep.runs()],
        include_mismatched=include_mismatched,
        extra_axes=[a for a in axes if a not in ("model", "optimizer", "strategy", "trial")],
        cycles_expected=int(sweep.al.cycles),
        dataset=dataset.get("name") if isinstance(dataset, dict) else None,
    )
    data.config, data.config_source = sweep.raw, f"sweep file {getattr(sweep, 'path', '') or sweep.name}"
    return read_study(data)


def read_study(data: SweepData) -> SweepData:
    """The study's recorded looks and current wave (al_core.study), for a sequential study's verdicts."""
    from al_core import study  # JSON only; al_core.study imports no torch

    data.looks = study.looks(data.sweep_dir)
    try:
        data.wave = study.current_wave(data.sweep_dir)
    except Exception:  # noqa: BLE001 - a damaged study.json: the loader of the sweep refuses it with one line
        data.wave = max((lk["wave"] for lk in data.looks), default=1)
    return data


def _config_of(spec) -> Optional[dict]:
    """The run's resolved config as run.json records it (None for a spec that carries none)."""
    config = getattr(spec, "config", None)
    return config.to_dict() if config is not None else None


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
    drawn = draw_all(tables, report_dir / "figures")
    epochs = load_epochs(sweep_dir, tables.runs, tables.keys)
    if len(epochs):
        write_text(report_dir / "epochs.csv", epochs.to_csv(index=False))
        drawn.append(
            (
                training_curves(epochs, report_dir / "figures" / "training_curves.png", curves),
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
        render.to_markdown([("h1", f"Summary: {sweep_dir.name}"), ("p", completeness_line(tables) + "."), *top], report_dir),
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


TABLES: list[Table] = [
    # cycles.csv: one row per run x finished cycle, with label_efficiency
    Table(
        "cycles",
        lambda t: t.data.cycles.assign(label_efficiency=metrics.label_efficiency(t.data.cycles)),
        csv_frame=cycles_csv_frame,
    ),
    Table(  # summary.csv: per group and n_labeled
        "summary",
        lambda t: metrics.with_run_counts(metrics.summary_table(t.cycles, t.keys), t.data.runs, t.cycles, t.keys),
        csv_frame=metrics.summary_csv,
        display=render.display_summary,
        caption="Test accuracy and macro-F1 per group and budget (mean ± 95% CI over trials).",
        fold=1,
    ),
    Table(  # runs.csv: per run
        "runs",
        lambda t: metrics.runs_table(t.cycles, t.data.runs, t.keys),
        display=render.display_runs,
        caption="Per run: final accuracy, AUBC, labels to reach random's final accuracy, and cost.",
        fold=4,
    ),
    Table(  # vs_random.csv: per non-random group and n_labeled, paired by trial
        "vs_random",
        lambda t: metrics.vs_random_table(t.cycles, t.keys),
        display=render.display_vs_random,
        caption="Accuracy gain over random, paired by trial (mean ± 95% CI, two-sided paired t-test).",
        fold=2,
    ),
    Table(  # groups.csv: per group, final accuracy, AUBC and cost
        "groups",
        lambda t: metrics.group_table(t.runs, t.keys),
        display=render.display_groups,
        caption="Per group at its largest budget: final accuracy, AUBC (mean ± 95% CI), labels to target, cost.",
    ),
    # compute.csv: cost per group and device; timings never pooled across GPU models
    Table("compute", lambda t: metrics.compute_table(t.runs, t.keys)),
    Table(  # optimizer_ranking.csv: best optimizer per model and budget
        "ranking",
        lambda t: metrics.optimizer_ranking(t.cycles, t.summary, t.keys),
        stem="optimizer_ranking",
        display=render.display_ranking,
        caption="Best optimizer per model and budget against the runner-up (paired by trial; descriptive: both are chosen from the same data, so p is no test of them; the claims are in optimizers.csv).",
        fold=3,
    ),
    # queried_classes.csv: class shares of the queried samples per strategy
    Table("classes", lambda t: metrics.queried_classes(t.cycles, t.keys), stem="queried_classes"),
    # The headline (analysis.headline), from the finished runs. Per group: n, AUBC and final accuracy, flag
    Table("grid", lambda t: grid(t.runs, t.keys), csv=False),
    Table(  # optimizers.csv: paired AUBC tests, Holm
        "optimizers",
        lambda t: t.claims.optimizers,
        display=render.display_pairs,
        caption="AUBC differences between optimizers per model, paired by trial (two-sided paired t-test; significant: Holm over the optimizer question's pairs).",
    ),
    Table(  # models.csv: the same between models
        "models",
        lambda t: t.claims.models,
        display=render.display_pairs,
        caption="AUBC differences between models per optimizer, paired by trial (two-sided paired t-test; significant: Holm over the model question's pairs).",
    ),
    Table("anova", lambda t: anova(t.runs, t.keys)),  # anova.csv: two-way ANOVA of AUBC
    Table("gains", lambda t: t.claims.gains),  # gains.csv: AUBC gain over random, Holm
    # The claims (analysis.questions) and trial planning (analysis.planning):
    Table("questions", lambda t: t.verdicts),  # questions.csv: one row per unit x question, primary first
    Table("interaction", lambda t: t.claims.interaction),  # interaction.csv: blocked F-test per strategy
    Table("power", power_table),  # power.csv: trials needed for 80% power
    Table("tuning_edges", tuning_edges, linked=False),  # tuning_edges.csv: tuned values chosen at an edge of the search
    Table(  # module_effect.csv: learning-loss sweeps, the loss-prediction module's own effect
        "module_effect",
        module_effect,
        display=render.display_module_effect,
        caption="The loss-prediction module's own effect: cycle-1 accuracy of learning_loss minus random, "
        "paired by trial (same initial set and weights; mean ± 95% CI, two-sided paired t-test).",
        linked=False,
    ),
]
TABLE = {table.name: table for table in TABLES}


def write_tables(tables: Tables, report_dir: Path) -> None:
    """The CSV file and the Markdown/LaTeX display of each table of TABLES, and results.json."""
    keys = tables.keys
    for table in TABLES:
        frame = getattr(tables, table.name)
        if frame is None or not table.csv:
            continue
        csv = table.csv_frame(frame, keys) if table.csv_frame else frame
        write_text(report_dir / f"{table.stem}.csv", csv.to_csv(index=False))
        if table.display:
            shown = table.display(frame, keys)
            write_text(report_dir / "tables" / f"{table.stem}.md", f"{table.caption}\n\n" + render.markdown_table(shown))
            if table.linked:
                write_text(
                    report_dir / "tables" / f"{table.stem}.tex", render.latex_table(shown, table.caption, f"tab:{table.stem}")
                )
    for name, payload in results_json(tables.cycles, keys).items():
        write_text(report_dir / name, json.dumps(payload) + "\n")


# ---------------------------------------------------------------------------------------------
def headline_section(tables: Tables, report_dir: Path) -> list[tuple]:
    """The headline blocks (analysis.headline) with the compact figure of the gains over random and,
    when runs kept their epochs, the training curves of one group."""
    blocks = headline_blocks(tables)
    if len(tables.gains):
        path = aubc_gain(tables.gains, tables.keys, report_dir / "figures" / "aubc_gain.png")
        blocks.append(
            (
                "figure",
                path,
                "AUBC gain over random per model x optimizer, paired by trial (mean, 95% CI; "
                "filled: significant after Holm; no bar: fewer than 3 pairs).",
            )
        )
    return blocks


def report_blocks(tables: Tables, drawn: list[tuple[Path, str]], report_dir: Path, command: str, top: list[tuple]) -> list[tuple]:
    """The report as a list of blocks (see render): headline, completeness, findings, tables, figures, config."""
    blocks: list[tuple] = [
        ("h1", f"Active-learning report: {tables.data.sweep_dir.name}"),
        ("p", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {tables.data.sweep_dir}."),
        ("p", completeness_line(tables) + "."),
        *top,
        *completeness_blocks(tables),
        ("h2", "Findings"),
        ("ul", findings(tables)),
        *table_blocks(tables),
        ("h2", "Figures"),
        *[("figure", path, caption) for path, caption in drawn],
        ("h2", "Configuration"),
    ]
    if tables.data.config:
        blocks += [("p", f"From the {tables.data.config_source}."), ("pre", _config_text(tables.data.config))]
    else:
        blocks.append(("p", "No configuration found (no readable run.json)."))
    return blocks + [("h2", "How to reproduce"), ("p", f"Regenerate this report with: {command}")]


def completeness_blocks(tables: Tables) -> list[tuple]:
    """The Completeness section: runs counted, runs left out, the runs not finished."""
    blocks: list[tuple] = [("h2", "Completeness"), ("p", completeness_line(tables) + ".")]
    if tables.data.n_unexpected:
        blocks.append(
            ("p", f"{tables.data.n_unexpected} run directories under runs/ are not part of this sweep's grid and are left out.")
        )
    blocks += left_out_blocks(tables.data.left_out)
    unfinished = tables.runs[~tables.runs["status"].isin(["done", "left out"])]
    if len(unfinished):
        shown = render.display_runs(unfinished.head(50), tables.keys)[["run", "status", "cycles"]]
        note = f" (the first 50 of {len(unfinished)})" if len(unfinished) > 50 else ""
        blocks += [
            (
                "p",
                f"Runs not finished{note}: in-progress runs count with the cycles they finished; missing runs have not started.",
            ),
            ("table", shown),
        ]
    return blocks


def left_out_blocks(left_out: pd.DataFrame) -> list[tuple]:
    """The "Runs left out" section: each run whose directory holds what is not its own, and why."""
    if left_out.empty:
        return []
    out = int((~left_out["included"]).sum())
    shown = left_out.rename(columns={"run_id": "run"}).assign(
        included=left_out["included"].map({True: "yes (--include-mismatched)", False: "no"})
    )
    return [
        ("h2", "Runs left out"),
        (
            "p",
            f"{out} run(s) left out of every table and test, {len(left_out) - out} included by --include-mismatched: "
            "their directories hold another config than the sweep's, rows of another run, or cycles with a gap or "
            "a conflicting duplicate. A run recording another config can be merged deliberately with "
            "--include-mismatched; fix or remove the others (and rerun them with make sweep).",
        ),
        ("table", shown.head(200)),
    ]


def table_blocks(tables: Tables) -> list[tuple]:
    """The Tables section: the final budget, the full tables folded in (TABLES' fold), every file linked."""
    keys, summary = tables.keys, tables.summary
    final = summary[summary["n_labeled"] == summary.groupby(keys, observed=True)["n_labeled"].transform("max")]
    blocks: list[tuple] = [
        ("h2", "Tables"),
        ("p", "Accuracies in percent; ± is the half-width of the 95% confidence interval (Student's t over trials)."),
        ("p", "Accuracy at each group's largest budget:"),
        ("table", render.display_summary(final, keys)),
        ("p", TABLE["groups"].caption),
        ("table", render.display_groups(tables.groups, keys)),
    ]
    if len(tables.vs_random):
        blocks += [
            ("p", "Gain over random at each group's largest paired budget:"),
            ("table", render.display_vs_random(final_vs_random(tables), keys)),
        ]
    blocks += edge_blocks(tables.tuning_edges, keys)
    for table in sorted((t for t in TABLES if t.fold), key=lambda t: t.fold):
        frame = getattr(tables, table.name)
        if 0 < len(frame) <= INLINE_ROWS:
            blocks.append(("details", f"Full table: {table.stem} ({len(frame)} rows)", table.display(frame, keys)))
    linked = [t for t in TABLES if t.linked]
    files = [f"{t.stem}.csv" for t in linked if t.csv]
    files += [f"tables/{t.stem}.{ext}" for t in linked if t.display for ext in ("md", "tex")]
    return blocks + [("p", "All tables (accuracies in the CSV files are fractions):"), ("files", [(f, f) for f in files])]


def _config_text(config: dict) -> str:
    try:
        import yaml

        return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    except Exception:  # noqa: BLE001 - any config that YAML cannot print is shown as JSON
        return json.dumps(config, indent=2, default=str)
