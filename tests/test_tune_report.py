"""The report's tuning tables: edge counts of the chosen values, and gains over random that
compare whole pipelines (strategy + its own tuning)."""

import json

import pandas as pd
import pytest

from test_tune import rows_of


def _tuned_sweep(tmp_path, tuned_of, edges_of):
    """A synthetic sweep whose runs tuned at cycle 1: `tuned_of(run_id)` the chosen values,
    `edges_of(run_id)` their edges."""
    from bench.synthetic_sweep import write_synthetic_sweep

    sweep_dir = tmp_path / "s"
    ids = write_synthetic_sweep(sweep_dir, models=("resnet18",), optimizers=("sgd", "adam"), trials=(0, 1, 2), cycles=3)
    for run_id in ids:
        d = sweep_dir / "runs" / run_id
        meta = json.loads((d / "run.json").read_text())
        meta["config"].update(
            tune={"cycles": [1], "folds": 2, "points": 4, "grid": {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}}}
        )
        (d / "run.json").write_text(json.dumps(meta))
        rows = rows_of(d)
        for r in rows:
            r["tuned"] = tuned_of(run_id)
            r["tune"] = {"val_accuracy": 0.5, "scores": [], "edges": edges_of(run_id)} if r["cycle"] == 1 else None
        (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return sweep_dir, ids


def test_report_counts_choices_at_the_edge_of_the_search(tmp_path):
    from analysis import build_report

    def edges(run_id):
        return {"lr": "high"} if "sgd" in run_id and run_id.endswith("t0") else {}

    sweep_dir, ids = _tuned_sweep(tmp_path, lambda r: {"lr": 0.05, "momentum": 0.9} if "sgd" in r else {"lr": 0.002}, edges)
    build_report(sweep_dir)
    table = pd.read_csv(sweep_dir / "report" / "tuning_edges.csv")
    sgd = table[(table["optimizer"] == "sgd") & (table["hyper_parameter"] == "lr")]
    n_sgd = sum("sgd" in r for r in ids) // 3  # runs per trial: one choice per run (cycle 1)
    assert sgd["choices"].sum() == 3 * n_sgd
    assert sgd["at_high"].sum() == n_sgd and sgd["at_low"].sum() == 0  # the trial-0 runs
    assert (table.loc[table["optimizer"] == "adam", "at_high"] == 0).all()
    assert set(table["hyper_parameter"]) == {"lr", "momentum"}
    cycles = pd.read_csv(sweep_dir / "report" / "cycles.csv")
    assert set(cycles.loc[cycles["cycle"] == 1, "tune_edges"].fillna("")) == {"lr:high", ""}


def test_report_without_edges_has_no_edge_table(tmp_path):
    from analysis.tuning_edges import edge_table

    cycles = pd.DataFrame({"optimizer": ["sgd"], "tuned.lr": [0.1]})
    assert edge_table(cycles, ["optimizer"]) is None
    cycles["tune_edges"] = ["lr:low"]
    got = edge_table(cycles, ["optimizer"])
    assert got.to_dict("records") == [
        {
            "optimizer": "sgd",
            "hyper_parameter": "lr",
            "choices": 1,
            "at_low": 1,
            "at_high": 0,
            "share_at_edge": pytest.approx(1.0),
        }
    ]


def test_gains_compare_pipelines_while_the_module_effect_keeps_its_own_rule(tmp_path):
    """Runs tuned apart (trial 0's learning_loss runs chose another lr): gains.csv keeps the pair,
    module_effect.csv (the module's own effect at cycle 1) leaves it out."""
    from analysis import build_report

    def tuned(run_id):
        return {"lr": 0.01 if "learning_loss" in run_id and run_id.endswith("t0") else 0.1}

    sweep_dir, _ = _tuned_sweep(tmp_path, tuned, lambda r: {})
    build_report(sweep_dir)
    report = sweep_dir / "report"
    gains = pd.read_csv(report / "gains.csv")
    assert (gains.loc[gains["strategy"] == "learning_loss", "n_pairs"] == 3).all()
    effect = pd.read_csv(report / "module_effect.csv")
    assert (effect["n_pairs"] == 2).all()
    text = (report / "report.md").read_text()
    assert "those gains compare pipelines" in text


def test_search_and_recipe_arms_are_keys_of_the_tables(tmp_path):
    from analysis import build_report

    sweep_dir, ids = _tuned_sweep(tmp_path, lambda r: {"lr": 0.01}, lambda r: {})
    for run_id in ids:
        path = sweep_dir / "runs" / run_id / "run.json"
        meta = json.loads(path.read_text())
        meta["config"].setdefault("train", {}).update(augment="randaugment", swa=0.25)
        meta["config"].setdefault("dataset", {}).update(imbalance={"ratio": 100})
        path.write_text(json.dumps(meta))
    build_report(sweep_dir)
    runs = pd.read_csv(sweep_dir / "report" / "runs.csv")
    assert (runs["tuning"] == "cycles 1; folds 2; search 4").all()
    assert (runs["augment"] == "randaugment").all() and (runs["swa"] == 0.25).all() and (runs["imbalance"] == 100).all()
    assert {"augment", "swa", "imbalance"} <= set(pd.read_csv(sweep_dir / "report" / "summary.csv").columns)


def test_report_md_says_how_many_choices_sit_at_an_edge(tmp_path):
    from analysis import build_report

    sweep_dir, ids = _tuned_sweep(tmp_path, lambda r: {"lr": 0.1}, lambda r: {"lr": "high"} if r.endswith("t1") else {})
    build_report(sweep_dir)
    text = (sweep_dir / "report" / "report.md").read_text()
    n = len(ids)
    assert f"Tuned values chosen at an edge of what was searched (tuning_edges.csv): {n // 3} of {n} choices" in text


def test_the_tuning_fits_count_in_the_runs_cost(tmp_path):
    # runs.csv keeps each run's tuning seconds (tune_time_s, cycle 1 here), and compute.csv's
    # device-hours count them with the cycles' train + select + eval seconds.
    from analysis import build_report

    sweep_dir, ids = _tuned_sweep(tmp_path, lambda r: {"lr": 0.01}, lambda r: {})
    for run_id in ids:
        d = sweep_dir / "runs" / run_id
        rows = rows_of(d)
        rows[0]["tune_time_s"] = 100.0
        (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(sweep_dir)
    runs = pd.read_csv(sweep_dir / "report" / "runs.csv")
    assert (runs["tune_time_s"] == 100.0).all()
    own = runs[["train_time_s", "select_time_s", "eval_time_s"]].sum(axis=1)
    compute = pd.read_csv(sweep_dir / "report" / "compute.csv")
    assert compute["device_hours"].sum() == pytest.approx((own.sum() + 100.0 * len(runs)) / 3600)
    assert (compute["tune_time_s_mean"] == 100.0).all()
