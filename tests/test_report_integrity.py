"""The report reads only what belongs to the sweep: runs recording another config, rows of another
run, cycles with a gap or a conflicting duplicate are left out and named; numbers are finite or
refused; a diverged run is recorded and counted, never written as NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from al_core import results
from al_core.config import ConfigError, load_sweep
from analysis.build import build_report, compute_tables, load
from analysis.report import main as report_main

SMOKE = "jobs/smoke.yaml"


def _row(spec, cycle: int, acc: float, **extra) -> dict:
    cfg = spec.config
    return results.cycle_row(
        spec.axes,
        run_id=spec.run_id,
        dataset=cfg.dataset.name,
        model=cfg.model,
        optimizer=cfg.optimizer,
        strategy=cfg.strategy,
        trial=cfg.trial,
        cycle=cycle,
        n_labeled=100 * cycle,
        n_pool=1200,
        queried=list(range(100 * (cycle - 1), 100 * cycle)),
        queried_class_counts=[10] * 10,
        test_accuracy=acc,
        test_macro_f1=acc,
        per_class_accuracy=[acc] * 10,
        train_time_s=1.0,
        select_time_s=0.1,
        eval_time_s=0.1,
        peak_mem_bytes=None,
        energy_j=None,
        device="cpu",
        **extra,
    )


def _write(run_dir: Path, config: dict, rows: list[dict], done: bool = True) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / results.RUN_JSON).write_text(json.dumps({"run_id": run_dir.name, "config": config}))
    (run_dir / results.CYCLES).write_text("".join(json.dumps(r) + "\n" for r in rows))
    if done:
        (run_dir / results.DONE).write_text("")


@pytest.fixture
def sweep(tmp_path):
    """The smoke sweep's 12 runs, finished, written by hand (3 cycles each)."""
    sw = load_sweep(SMOKE, [f"output={tmp_path}"])
    for i, spec in enumerate(sw.runs()):
        rows = [_row(spec, c, 0.3 + 0.1 * c + 0.01 * (i % 5)) for c in (1, 2, 3)]
        _write(sw.run_dir(spec.run_id), spec.config.to_dict(), rows)
    return sw


def _left_out(data) -> dict:
    return dict(zip(data.left_out["run_id"], data.left_out["reason"]))


def test_a_consistent_sweep_leaves_nothing_out(sweep):
    data = load(sweep.sweep_dir, sweep)
    assert data.left_out.empty
    assert data.runs["status"].eq("done").all() and len(data.runs) == 12


def test_a_sweep_edited_after_its_runs_leaves_them_out_unless_included(sweep, tmp_path, capsys):
    edited = load_sweep(SMOKE, [f"output={tmp_path}", "train.epochs=50", "optim.sgd.lr=0.5"])
    data = load(edited.sweep_dir, edited)
    assert len(data.left_out) == 12 and not data.left_out["included"].any()
    assert "train.epochs" in data.left_out["reason"].iloc[0]
    assert data.cycles.empty and data.runs["status"].eq("left out").all()
    adam_only = load_sweep(SMOKE, [f"output={tmp_path}", "optim.sgd.lr=0.5"])
    data = load(adam_only.sweep_dir, adam_only)
    assert sorted(_left_out(data)) == sorted(s.run_id for s in adam_only.runs() if s.optimizer == "sgd")
    assert set(data.cycles["optimizer"]) == {"adam"}
    merged = load(adam_only.sweep_dir, adam_only, include_mismatched=True)
    assert merged.left_out["included"].all() and set(merged.cycles["optimizer"]) == {"adam", "sgd"}
    # the CLI: named in the report, counted in summary.csv, one warning line per run
    capsys.readouterr()
    assert report_main([SMOKE, f"output={tmp_path}", "optim.sgd.lr=0.5"]) == 0
    captured = capsys.readouterr()
    assert "6 left out" in captured.out
    assert sum("left out of the report" in line for line in captured.err.splitlines()) == 6
    report = (sweep.sweep_dir / "report" / "report.md").read_text()
    assert "## Runs left out" in report and "resnet18-sgd-entropy-t0" in report
    summary = pd.read_csv(sweep.sweep_dir / "report" / "summary.csv")
    left = summary[summary["n_left_out"] > 0]  # the sgd groups have no reported row: one row each counts them
    assert set(left["optimizer"]) == {"sgd"} and left["n_left_out"].sum() == 6 and left["n_trials"].eq(0).all()
    assert report_main([SMOKE, f"output={tmp_path}", "optim.sgd.lr=0.5", "--include-mismatched"]) == 0
    summary = pd.read_csv(sweep.sweep_dir / "report" / "summary.csv")
    assert set(summary["optimizer"]) == {"adam", "sgd"}


def test_a_left_out_run_is_counted_in_its_groups_summary_row(sweep):
    spec = sweep.run("resnet18-adam-entropy-t1")
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), [_row(spec, 1, 0.4), _row(spec, 3, 0.6)])
    tables = compute_tables(load(sweep.sweep_dir, sweep))
    s = tables.summary.set_index(["optimizer", "strategy", "n_labeled"])
    assert s.loc[("adam", "entropy", 100), "n_left_out"] == 1 and s.loc[("adam", "entropy", 100), "n_trials"] == 1
    assert s.loc[("sgd", "entropy", 100), "n_left_out"] == 0


def test_a_row_of_another_strategy_is_never_relabelled(sweep):
    spec = sweep.run("resnet18-sgd-entropy-t0")
    rows = [_row(spec, c, 0.5) for c in (1, 2, 3)]
    rows[1]["strategy"] = "random"
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), rows)
    data = load(sweep.sweep_dir, sweep)
    assert "strategy 'random'" in _left_out(data)[spec.run_id]
    per_strategy = data.cycles[data.cycles["cycle"] == 1].groupby(["optimizer", "strategy"]).size()
    assert per_strategy[("sgd", "random")] == 2 and per_strategy[("sgd", "entropy")] == 1
    # the same without the sweep file (--results): checked against the directory's name
    data = load(sweep.sweep_dir)
    assert spec.run_id in _left_out(data)


@pytest.mark.parametrize(
    "cycles, duplicate, why",
    [((1, 3), None, "cycle 2 is missing"), ((2, 3), None, "cycle 1 is missing"), ((1, 2, 3), "differs", "written twice")],
)
def test_gaps_and_conflicting_duplicates_leave_the_run_out(sweep, cycles, duplicate, why):
    spec = sweep.run("resnet18-adam-random-t0")
    rows = [_row(spec, c, 0.5) for c in cycles]
    if duplicate:
        rows.append(_row(spec, 2, 0.9))
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), rows)
    data = load(sweep.sweep_dir, sweep)
    assert why in _left_out(data)[spec.run_id]
    assert spec.run_id not in set(data.cycles["run_id"])


def test_an_identical_duplicate_is_harmless_and_done_needs_every_cycle(sweep):
    spec = sweep.run("resnet18-adam-random-t0")
    rows = [_row(spec, c, 0.5) for c in (1, 2, 3)]
    again = dict(rows[1], train_time_s=7.0)  # a re-executed write: only the timing differs
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), [*rows, again])
    data = load(sweep.sweep_dir, sweep)
    assert data.left_out.empty and (data.cycles["run_id"] == spec.run_id).sum() == 3
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), rows[:2])  # DONE with 2 of 3
    assert "2 of 3 cycles" in _left_out(load(sweep.sweep_dir, sweep))[spec.run_id]
    (sweep.run_dir(spec.run_id) / results.DONE).unlink()  # in progress with 2 of 3: counted as such
    data = load(sweep.sweep_dir, sweep)
    assert data.left_out.empty and data.runs.set_index("run_id").loc[spec.run_id, "status"] == "in progress"


def test_diverged_runs_are_counted_per_group(sweep):
    spec = sweep.run("resnet18-adam-entropy-t0")
    rows = [_row(spec, 1, 0.5), _row(spec, 2, 0.1, diverged={"cycle": 2, "epoch": 3}), _row(spec, 3, 0.5)]
    _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), rows)
    tables = compute_tables(load(sweep.sweep_dir, sweep))
    runs = tables.runs.set_index("run_id")
    assert runs.loc[spec.run_id, "diverged_cycles"] == 1 and runs["diverged_cycles"].sum() == 1
    s = tables.summary.set_index(["optimizer", "strategy", "n_labeled"])
    assert s.loc[("adam", "entropy", 300), "n_diverged"] == 1 and s["n_diverged"].sum() == 3  # one run, 3 budgets
    assert tables.summary["n_trials"].min() == 2  # kept, not dropped


def test_an_unwritable_report_directory_is_one_error_line(sweep, monkeypatch, capsys):
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(sweep.sweep_dir / "report" / "tables"))

    monkeypatch.setattr("analysis.build.write_report", refuse)
    assert report_main([SMOKE, f"output={sweep.output}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot write the report under") and "Permission denied" in err[-1]
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize(
    "override",
    ["optim.sgd.lr=.nan", "optim.sgd.momentum=.inf", "train.checkpoint_min_s=.nan", "select.beta=-.inf", "ll.margin=.nan"],
)
def test_non_finite_numbers_are_refused(override):
    with pytest.raises(ConfigError, match=r"expected a finite number"):
        load_sweep(SMOKE, [override])


def test_a_diverging_run_records_it_and_writes_no_nan(tmp_path):
    from al_core.loop import run

    sw = load_sweep(SMOKE, [f"output={tmp_path}", "optim.sgd.lr=1e12", "al.cycles=2", "train.epochs=2"])
    spec = sw.run("resnet18-sgd-random-t0")
    assert run(spec, sw.run_dir(spec.run_id)) == "done"
    run_dir = sw.run_dir(spec.run_id)
    for name in ("cycles.jsonl", "epochs.jsonl", "run.json"):
        assert "NaN" not in (run_dir / name).read_text() and "Infinity" not in (run_dir / name).read_text()
    rows = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["diverged"]["cycle"] for r in rows] == [1, 2] and all(r["train_loss"] is None for r in rows)
    assert all(0 <= r["test_accuracy"] <= 1 and math.isfinite(r["test_macro_f1"]) for r in rows)
    assert (run_dir / "DONE").exists()
    build_report(sw.sweep_dir, sw)
    summary = pd.read_csv(sw.sweep_dir / "report" / "summary.csv")
    assert summary["n_diverged"].max() == 1


def test_timings_are_never_pooled_across_gpu_models(sweep):
    """compute.csv keeps each device's timings apart; a group whose runs ran on two GPU models
    shows no pooled train time in groups.csv."""
    for t, device in ((0, "NVIDIA Tesla P6"), (1, "NVIDIA V100-SXM2-32GB")):
        spec = sweep.run(f"resnet18-adam-entropy-t{t}")
        rows = [dict(_row(spec, c, 0.5), device=device, train_time_s=100.0 * (t + 1)) for c in (1, 2, 3)]
        _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), rows)
    tables = compute_tables(load(sweep.sweep_dir, sweep))
    c = tables.compute[(tables.compute["optimizer"] == "adam") & (tables.compute["strategy"] == "entropy")]
    assert sorted(c["device"]) == ["NVIDIA Tesla P6", "NVIDIA V100-SXM2-32GB"]
    assert sorted(c["train_time_s_mean"]) == [300.0, 600.0]
    g = tables.groups.set_index(["optimizer", "strategy"])
    assert pd.isna(g.loc[("adam", "entropy"), "train_time_s_mean"]) and g.loc[("sgd", "entropy"), "train_time_s_mean"] == 3.0
