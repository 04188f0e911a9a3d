"""Analysis of an active-learning sweep: run directories -> pandas tables -> figures and report.

The command line lives in `analysis.report` (python -m analysis.report); the pieces are here.
"""

from analysis.build import Tables, build_report, compute_tables, load, results_json, write_report
from analysis.findings import findings, summary_lines
from analysis.load import ExpectedRun, SweepData, load_sweep_dir
from analysis.metrics import (
    aubc,
    ci95,
    group_table,
    label_efficiency,
    labels_to_target,
    optimizer_ranking,
    paired_stats,
    queried_classes,
    random_targets,
    runs_table,
    summary_table,
    vs_random_table,
)

__all__ = [
    "ExpectedRun",
    "SweepData",
    "Tables",
    "aubc",
    "build_report",
    "ci95",
    "compute_tables",
    "findings",
    "group_table",
    "label_efficiency",
    "labels_to_target",
    "load",
    "load_sweep_dir",
    "optimizer_ranking",
    "paired_stats",
    "queried_classes",
    "random_targets",
    "results_json",
    "runs_table",
    "summary_lines",
    "summary_table",
    "vs_random_table",
    "write_report",
]
