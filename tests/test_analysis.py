"""The metrics of docs/METRICS.md on hand-made tables, and loading of damaged and partial run directories.

Expected values are computed here by other means: hand-written trapezoids, known t-quantiles,
scipy's paired t-test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import (
    ExpectedRun,
    aubc,
    build_report,
    ci95,
    group_table,
    label_efficiency,
    labels_to_target,
    load_sweep_dir,
    optimizer_ranking,
    queried_classes,
    random_targets,
    results_json,
    runs_table,
    summary_table,
    vs_random_table,
)
from tests.test_analysis_report import REQUIRED_COLUMNS

KEYS = ["dataset", "model", "optimizer", "strategy"]
# Student's t 97.5% quantiles from their closed forms (df 1: Cauchy; df 2: (2p-1)/sqrt(2p(1-p))).
T_0975_DF1 = math.tan(math.pi * (0.975 - 0.5))  # 12.7062047361747
T_0975_DF2 = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)  # 4.302652729749462


def row(
    model="resnet18",
    optimizer="sgd",
    strategy="random",
    trial=0,
    cycle=1,
    n_labeled=100,
    acc=0.5,
    f1=None,
    n_pool=1000,
    n_classes=10,
    **extra,
) -> dict:
    run_id = f"{model}-{optimizer}-{strategy}-t{trial}"
    r = {
        "run_id": run_id,
        "dataset": "cifar10",
        "model": model,
        "optimizer": optimizer,
        "strategy": strategy,
        "trial": trial,
        "cycle": cycle,
        "n_labeled": n_labeled,
        "n_pool": n_pool,
        "queried": list(range(5)),
        "queried_class_counts": [1] * n_classes,
        "test_accuracy": acc,
        "test_macro_f1": acc if f1 is None else f1,
        "per_class_accuracy": [acc] * n_classes,
        "train_time_s": 10.0,
        "select_time_s": 1.0,
        "eval_time_s": 0.5,
        "peak_mem_bytes": None,
        "energy_j": None,
        "device": "cpu",
    }
    r.update(extra)
    return r


def table(rows: list[dict]) -> pd.DataFrame:
    """A cycles table as load_sweep_dir builds it, from rows."""
    df = pd.DataFrame(rows)
    return df.sort_values(["run_id", "cycle"]).reset_index(drop=True)


def curve(strategy, trial, accs, model="resnet18", optimizer="sgd", sizes=None, **extra) -> list[dict]:
    sizes = sizes or [100 * (i + 1) for i in range(len(accs))]
    return [row(model, optimizer, strategy, trial, c + 1, n, a, **extra) for c, (n, a) in enumerate(zip(sizes, accs))]


def write_run(sweep_dir: Path, rows: list[dict], run_id: str | None = None, done: bool = True, run_json: bool = True) -> Path:
    run_id = run_id or rows[0]["run_id"]
    run_dir = sweep_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if run_json:
        (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "config": {"al": {"cycles": 3}}}))
    (run_dir / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if done:
        (run_dir / "DONE").write_text("")
    return run_dir


# --------------------------------------------------------------------------------------------
# Per group and budget
def test_ci95_uses_students_t():
    # The tabulated 4.302652729911275 agrees to 1e-10; the closed form is exact to the last bit.
    assert T_0975_DF2 == pytest.approx(4.302652729911275, rel=1e-10)
    assert ci95([0.1], [3])[0] == pytest.approx(T_0975_DF2 * 0.1 / math.sqrt(3), rel=1e-12)
    assert math.isnan(ci95([0.1], [1])[0])


def test_summary_mean_std_ci_per_group_and_budget():
    rows = (
        curve("random", 0, [0.5, 0.8])
        + curve("random", 1, [0.6, 0.9])
        + curve("random", 2, [0.7])
        + curve("random", 0, [0.4], optimizer="adam")
    )
    for r in rows:
        r["test_macro_f1"] = r["test_accuracy"] / 2
    s = summary_table(table(rows), KEYS).set_index(["optimizer", "n_labeled"])
    first = s.loc[("sgd", 100)]
    assert first["n_trials"] == 3
    assert first["acc_mean"] == pytest.approx(0.6)
    assert first["acc_std"] == pytest.approx(0.1)  # ddof = 1: sqrt((0.01 + 0 + 0.01) / 2)
    assert first["acc_ci95"] == pytest.approx(T_0975_DF2 * 0.1 / math.sqrt(3))
    assert first["f1_mean"] == pytest.approx(0.3) and first["f1_std"] == pytest.approx(0.05)
    assert first["f1_ci95"] == pytest.approx(T_0975_DF2 * 0.05 / math.sqrt(3))
    second = s.loc[("sgd", 200)]  # trial 2 has not finished cycle 2: two trials
    assert second["n_trials"] == 2
    assert second["acc_ci95"] == pytest.approx(T_0975_DF1 * np.std([0.8, 0.9], ddof=1) / math.sqrt(2))
    lone = s.loc[("adam", 100)]
    assert lone["n_trials"] == 1 and math.isnan(lone["acc_std"]) and math.isnan(lone["acc_ci95"])


# --------------------------------------------------------------------------------------------
# Per cycle
def test_label_efficiency_points_per_percent_of_pool():
    # n_pool 1000, 10 classes: cycle 1 gains over chance (0.1) from 0 labels.
    rows = curve("random", 0, [0.4, 0.5, 0.65], sizes=[100, 200, 400])
    le = label_efficiency(table(rows))
    assert le.tolist() == pytest.approx(
        [
            100 * (0.4 - 0.1) / (100 * 100 / 1000),
            100 * (0.5 - 0.4) / (100 * 100 / 1000),
            100 * (0.65 - 0.5) / (100 * 200 / 1000),
        ]
    )


def test_label_efficiency_is_nan_without_the_previous_cycle():
    rows = curve("random", 0, [0.4, 0.5, 0.65])
    del rows[1]  # cycle 2 damaged and skipped
    le = label_efficiency(table(rows))
    assert le.iloc[0] == pytest.approx(3.0) and math.isnan(le.iloc[1])


# --------------------------------------------------------------------------------------------
# Per run
def test_aubc_is_the_normalised_trapezoid():
    rows = curve("random", 0, [0.5, 0.6, 0.8], sizes=[100, 200, 400]) + curve("random", 1, [0.7])
    area = (200 - 100) * (0.5 + 0.6) / 2 + (400 - 200) * (0.6 + 0.8) / 2
    result = aubc(table(rows[::-1]))  # row order must not matter
    assert result["resnet18-sgd-random-t0"] == pytest.approx(area / (400 - 100))
    assert math.isnan(result["resnet18-sgd-random-t1"])  # fewer than 2 cycles


def test_labels_to_target_interpolates_to_random_final_accuracy():
    rows = (
        curve("random", 0, [0.5, 0.6, 0.7])
        + curve("random", 1, [0.5, 0.62])  # in progress: 200 is the largest budget reached by all random runs
        + curve("entropy", 0, [0.55, 0.65, 0.7])
        + curve("entropy", 1, [0.7, 0.8])
        + curve("entropy", 2, [0.3, 0.4, 0.5])
        + curve("entropy", 0, [0.9, 0.9], optimizer="adam")  # no random run with adam
    )
    cycles = table(rows)
    targets = random_targets(cycles, KEYS).set_index("optimizer")
    assert targets.loc["sgd", "target_n"] == 200
    assert targets.loc["sgd", "target_acc"] == pytest.approx(0.61)
    result = labels_to_target(cycles, KEYS)
    assert result["resnet18-sgd-entropy-t0"] == pytest.approx(100 + (0.61 - 0.55) / (0.65 - 0.55) * 100)
    assert result["resnet18-sgd-entropy-t1"] == 100  # above target at its first cycle
    assert math.isnan(result["resnet18-sgd-entropy-t2"])  # never reaches it
    assert math.isnan(result["resnet18-adam-entropy-t0"])  # no random run to define a target
    assert result["resnet18-sgd-random-t0"] == pytest.approx(100 + (0.61 - 0.5) / (0.6 - 0.5) * 100)


def test_runs_table_sums_maxes_and_final_values():
    rows = curve("random", 0, [0.5, 0.6, 0.7], f1=0.4)
    for r, mem, energy in zip(rows, [100, 300, 200], [10.0, None, 30.0]):
        r.update(peak_mem_bytes=mem, energy_j=energy, train_time_s=r["cycle"] * 10.0)
    rows += curve("random", 1, [0.5, 0.55], f1=0.3)
    for r in rows[3:]:
        r.update(energy_j=5.0, peak_mem_bytes=None)
    cycles = table(rows)
    runs = pd.DataFrame(
        {
            "run_id": ["resnet18-sgd-random-t0", "resnet18-sgd-random-t1", "resnet18-sgd-random-t2"],
            "dataset": "cifar10",
            "model": "resnet18",
            "optimizer": "sgd",
            "strategy": "random",
            "trial": [0, 1, 2],
            "status": ["done", "in progress", "missing"],
            "cycles_expected": 3,
            "done": [True, False, False],
        }
    )
    out = runs_table(cycles, runs, KEYS).set_index("trial")
    assert out.loc[0, "cycles_done"] == 3 and bool(out.loc[0, "done"])
    assert out.loc[0, "final_acc"] == pytest.approx(0.7) and out.loc[0, "final_f1"] == pytest.approx(0.4)
    assert out.loc[0, "train_time_s"] == pytest.approx(10 + 20 + 30)
    assert out.loc[0, "peak_mem_bytes"] == 300
    assert math.isnan(out.loc[0, "energy_j"])  # one cycle without energy
    assert out.loc[1, "energy_j"] == pytest.approx(10.0) and math.isnan(out.loc[1, "peak_mem_bytes"])
    assert out.loc[1, "final_acc"] == pytest.approx(0.55) and out.loc[1, "cycles_done"] == 2
    assert out.loc[2, "cycles_done"] == 0 and math.isnan(out.loc[2, "final_acc"])
    for column in REQUIRED_COLUMNS["runs.csv"]:  # README, Results layout
        assert column in out.reset_index().columns


def test_gpu_hours_sum_train_select_eval_of_gpu_runs_only():
    rows = curve("random", 0, [0.5, 0.6], device="NVIDIA V100") + curve("random", 1, [0.5, 0.6])  # t1 on the CPU
    rows += curve("random", 2, [0.5, 0.6], device="NVIDIA V100")
    for r in rows:
        r.update(train_time_s=3000.0 * r["cycle"], select_time_s=100.0, eval_time_s=50.0)
    cycles = table(rows)
    runs = pd.DataFrame(
        {
            "run_id": sorted(cycles["run_id"].unique()),
            "dataset": "cifar10",
            "model": "resnet18",
            "optimizer": "sgd",
            "strategy": "random",
            "trial": [0, 1, 2],
            "status": "done",
            "cycles_expected": 2,
            "done": True,
        }
    )
    g = group_table(runs_table(cycles, runs, KEYS), KEYS).iloc[0]
    per_run = (3000 + 6000) + 2 * 100 + 2 * 50
    assert g["gpu_hours"] == pytest.approx(2 * per_run / 3600)
    assert g["cpu_hours"] == pytest.approx(per_run / 3600)
    assert g["n_runs"] == 3 and g["final_acc_mean"] == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------
# Against random
def test_vs_random_pairs_only_trials_present_in_both():
    ll = {0: [0.60, 0.70], 1: [0.55, 0.72], 2: [0.90, 0.90]}
    rnd = {0: [0.50, 0.66], 1: [0.52, 0.69], 3: [0.10, 0.10]}
    rows = [r for t, a in ll.items() for r in curve("learning_loss", t, a)]
    rows += [r for t, a in rnd.items() for r in curve("random", t, a)]
    out = vs_random_table(table(rows), KEYS).set_index("n_labeled")
    assert list(out["strategy"].unique()) == ["learning_loss"]
    for n, i in ((100, 0), (200, 1)):
        a, b = [ll[0][i], ll[1][i]], [rnd[0][i], rnd[1][i]]
        diffs = np.subtract(a, b)
        assert out.loc[n, "n_pairs"] == 2
        assert out.loc[n, "diff_mean"] == pytest.approx(diffs.mean())
        assert out.loc[n, "diff_std"] == pytest.approx(np.std(diffs, ddof=1))
        assert out.loc[n, "diff_ci95"] == pytest.approx(T_0975_DF1 * np.std(diffs, ddof=1) / math.sqrt(2))
        assert out.loc[n, "p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_vs_random_p_value_is_nan_for_one_pair_or_equal_diffs():
    rows = curve("entropy", 0, [0.6]) + curve("random", 0, [0.5])
    rows += curve("entropy", 0, [0.7], optimizer="adam") + curve("random", 0, [0.6], optimizer="adam")
    rows += curve("entropy", 1, [0.8], optimizer="adam") + curve("random", 1, [0.7], optimizer="adam")  # same diff 0.1
    out = vs_random_table(table(rows), KEYS).set_index("optimizer")
    assert out.loc["sgd", "n_pairs"] == 1 and math.isnan(out.loc["sgd", "p_value"])
    assert out.loc["adam", "n_pairs"] == 2 and math.isnan(out.loc["adam", "p_value"])
    assert out.loc["adam", "diff_mean"] == pytest.approx(0.1)


def test_optimizer_ranking_tests_best_against_runner_up_by_trial():
    rows = []
    for opt, accs in {"sgd": [0.80, 0.82, 0.81], "adam": [0.78, 0.79, 0.80], "rmsprop": [0.5, 0.5, 0.5]}.items():
        for t, a in enumerate(accs):
            rows += curve("random", t, [a], optimizer=opt)
    cycles = table(rows)
    out = optimizer_ranking(cycles, summary_table(cycles, KEYS), KEYS).iloc[0]
    assert (out["best"], out["runner_up"]) == ("sgd", "adam")
    assert out["n_pairs"] == 3
    assert out["p_value"] == pytest.approx(stats.ttest_rel([0.80, 0.82, 0.81], [0.78, 0.79, 0.80]).pvalue)


def test_queried_classes_sums_cycles_after_the_initial_set():
    rows = curve("entropy", 0, [0.5, 0.6, 0.7])
    rows[0]["queried_class_counts"] = [100, 0]
    rows[1]["queried_class_counts"] = [3, 1]
    rows[2]["queried_class_counts"] = [5, 1]
    out = queried_classes(table(rows), KEYS)
    assert out["count"].tolist() == [8, 2]
    assert out["fraction"].tolist() == pytest.approx([0.8, 0.2])


# --------------------------------------------------------------------------------------------
# Loading: damaged and partial inputs
def test_damaged_inputs_are_skipped_with_one_warning_per_file(tmp_path, capsys):
    good = curve("random", 0, [0.5, 0.6, 0.7])
    write_run(tmp_path, good)
    # Half-written last line and a row missing a field: the first line is kept.
    half = curve("random", 1, [0.5, 0.6, 0.7])
    del half[1]["test_accuracy"]
    d = write_run(tmp_path, half, done=False)
    text = (d / "cycles.jsonl").read_text()
    (d / "cycles.jsonl").write_text(text[: len(text) - 40])
    # Empty cycles.jsonl, unparsable run.json.
    empty = write_run(tmp_path, curve("random", 2, [0.5]), done=False)
    (empty / "cycles.jsonl").write_text("")
    (empty / "run.json").write_text("{not json")
    # Missing cycles.jsonl; a row whose run_id is another run's.
    missing = write_run(tmp_path, curve("random", 3, [0.5]), done=False)
    (missing / "cycles.jsonl").unlink()
    write_run(tmp_path, curve("random", 0, [0.5]), run_id="resnet18-sgd-random-t4", done=False)

    data = load_sweep_dir(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("warning: ") for line in err)
    named = {
        "resnet18-sgd-random-t1/cycles.jsonl": 1,
        "resnet18-sgd-random-t2/cycles.jsonl": 1,
        "resnet18-sgd-random-t2/run.json": 1,
        "resnet18-sgd-random-t3/cycles.jsonl": 1,
        "resnet18-sgd-random-t4/cycles.jsonl": 1,
    }
    for name, count in named.items():
        assert sum(name in line for line in err) == count, (name, err)
    assert len(err) == len(named)
    assert not any("random-t0/" in line for line in err)  # the intact run
    assert data.cycles.groupby("run_id").size().to_dict() == {"resnet18-sgd-random-t0": 3, "resnet18-sgd-random-t1": 1}
    status = data.runs.set_index("run_id")["status"]
    assert status["resnet18-sgd-random-t0"] == "done"
    assert (status.drop("resnet18-sgd-random-t0") == "in progress").all()
    assert "queried" not in data.cycles.columns


def test_expected_runs_mark_missing_and_ignore_others(tmp_path):
    write_run(tmp_path, curve("random", 0, [0.5, 0.6]))
    write_run(tmp_path, curve("random", 1, [0.5]), done=False)
    write_run(tmp_path, curve("random", 9, [0.5]))  # not in this sweep's grid
    expected = [ExpectedRun(f"resnet18-sgd-random-t{t}", "resnet18", "sgd", "random", t) for t in range(3)]
    data = load_sweep_dir(tmp_path, expected=expected, cycles_expected=2, dataset="cifar10")
    status = data.runs.set_index("run_id")["status"].to_dict()
    assert status == {
        "resnet18-sgd-random-t0": "done",
        "resnet18-sgd-random-t1": "in progress",
        "resnet18-sgd-random-t2": "missing",
    }
    assert data.n_unexpected == 1
    assert set(data.cycles["trial"]) == {0, 1}
    missing = data.runs.set_index("run_id").loc["resnet18-sgd-random-t2"]
    assert missing["dataset"] == "cifar10" and missing["cycles_expected"] == 2


def test_extra_grid_axes_become_key_columns(tmp_path):
    for width in (32, 64):
        rows = curve("random", 0, [0.5, 0.6 + width / 1000])
        for r in rows:
            r["run_id"] += f"-{width}"
        write_run(tmp_path, rows)
    named = load_sweep_dir(tmp_path, extra_axes=["train.width"])
    assert named.keys == [*KEYS, "train.width"]
    assert sorted(named.cycles["train.width"].unique()) == [32, 64]  # typed: numbers sort as numbers
    unnamed = load_sweep_dir(tmp_path)
    assert unnamed.keys == [*KEYS, "variant"]
    s = summary_table(unnamed.cycles, unnamed.keys)
    assert len(s) == 4  # two widths x two budgets: never averaged together
    assert sorted(results_json(named.cycles, named.keys)) == ["results_32.json", "results_64.json"]


def test_report_of_a_sweep_with_an_extra_axis(tmp_path):
    for width in (32, 64):
        for strategy in ("entropy", "random"):
            for trial in (0, 1):
                rows = curve(strategy, trial, [0.5, 0.6 + width / 1000 + trial / 100])
                for r in rows:
                    r["run_id"] += f"-{width}"
                write_run(tmp_path, rows)
    html = build_report(tmp_path).read_text()
    assert "variant" in html and "8 of 8 runs done" in html
    vs = pd.read_csv(tmp_path / "report" / "vs_random.csv")
    assert sorted(vs["variant"].unique()) == [32, 64] and (vs["n_pairs"] == 2).all()
