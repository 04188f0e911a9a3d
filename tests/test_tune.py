"""Optimizer recipes, hyper-parameter selection inside the loop, and the loss-module control."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from al_core import loop as loop_mod
from al_core import optim as optim_mod
from al_core import train as train_mod
from al_core import recipes, tune, tuning
from al_core.config import load_sweep
from al_core.io import read_jsonl
from al_core.loop import run
from al_core.results import comparable
from al_core.registry import optimizer_params
from al_core.run import main as run_main
from tests._forked import Run
from test_resume import wait_stopped

# digits: 8x8 images, a run of a few cycles takes seconds on a CPU.
DIGITS = [
    "dataset.name=digits",
    "grid.model=[resnet18]",
    "al.initial_size=60",
    "al.query_size=30",
    "al.cycles=2",
    "train.epochs=2",
    "train.batch_size=16",
    "train.width=4",
    "train.schedule=cosine",
]
TUNE = "tune={cycles: [1], folds: 2, grid: {sgd: {lr: [0.001, 0.05]}, adam: {lr: [1.0e-4, 1.0e-3]}}}"


def quiet(_):
    pass


def rows_of(run_dir):
    return read_jsonl(Path(run_dir) / "cycles.jsonl")


# ---------------------------------------------------------------------------------------------
# Recipes
def test_recipes_resolve_as_documented_and_explicit_values_win(smoke_yaml):
    for name in ("group", "published"):
        sweep = load_sweep(smoke_yaml, [f"optim.recipe={name}"])
        for opt in ("sgd", "adam"):
            cfg = sweep.run(f"resnet18-{opt}-random-t0").config
            assert cfg.recipe == name
            assert cfg.optim == optimizer_params(opt, recipes.RECIPES[name][opt], "x")
            assert cfg.to_dict()["recipe"] == name and cfg.to_dict()["optim"] == cfg.optim  # what run.json records
    published = load_sweep(smoke_yaml, ["optim.recipe=published"]).run("resnet18-adam-random-t0").config.optim
    assert published["lr"] == 1e-3 and published["weight_decay"] == 5e-4
    group = load_sweep(smoke_yaml, ["optim.recipe=group"]).run("resnet18-adam-random-t0").config.optim
    assert group["lr"] == 1e-4 and group["weight_decay"] == 0.0
    # An explicit optim.<name> value overrides the recipe's, key by key.
    over = load_sweep(smoke_yaml, ["optim.recipe=published", "optim.adam.lr=3.0e-4"]).run("resnet18-adam-random-t0").config
    assert over.optim["lr"] == 3e-4 and over.optim["weight_decay"] == 5e-4 and over.recipe == "published"
    # The group recipe is the values jobs/cifar10.yaml listed before recipes existed.
    g = recipes.RECIPES["group"]
    assert g["sgd"] == {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    assert g["adam"]["lr"] == g["adamw"]["lr"] == g["rmsprop"]["lr"] == 1e-4
    assert g["adamw"]["weight_decay"] == 5e-4 and g["rmsprop"]["alpha"] == 0.99


def test_no_recipe_keeps_registry_defaults_and_the_old_fingerprint(smoke_yaml):
    cfg = load_sweep(smoke_yaml).run("resnet18-adam-random-t0").config
    assert cfg.recipe is None and cfg.tune is None and cfg.ll.train_module == "auto"
    assert cfg.optim == optimizer_params("adam", {}, "x")
    d = cfg.to_dict()
    assert "recipe" not in d and "tune" not in d and "train_module" not in d["ll"]  # old run.json, same fingerprint


def test_recipe_as_a_grid_axis(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["grid.optim.recipe=[group,published]"])
    ids = [s.run_id for s in sweep.runs()]
    assert "resnet18-adam-random-t0-group" in ids and "resnet18-adam-random-t0-published" in ids
    assert sweep.run("resnet18-adam-random-t0-group").config.optim["lr"] == 1e-4
    assert sweep.run("resnet18-adam-random-t0-published").config.optim["lr"] == 1e-3


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optim.recipe=mine"], "optim.recipe: expected one of group, published"),
        (["tune={cycles: [1], grid: {sgd: {lr: [0.1]}}}"], "tune.grid.adam: missing"),
        (["tune={cycles: [9], grid: {sgd: {}, adam: {}}}"], "tune.cycles"),
        (["tune={folds: 1, grid: {sgd: {}, adam: {}}}"], "tune.folds"),
        (["tune={folds: 1.5, grid: {sgd: {}, adam: {}}}"], "tune.folds"),
        (["tune={grid: {sgd: {momentum: [0.9, 0.9]}, adam: {}}}"], "tune.grid.sgd.momentum: expected distinct values"),
        (["tune={grid: {sgd: {beta: [0.9]}, adam: {}}}"], "unknown key tune.grid.sgd.beta"),
        (["tune={grid: {sgd: {lr: [0.1]}, adam: {}}, every: 2}"], "unknown key tune.every"),
        (["ll.train_module=sometimes"], "ll.train_module: expected auto or always"),
    ],
)
def test_bad_recipe_tune_and_train_module_values_exit_2(smoke_yaml, tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as e:
        run_main([str(smoke_yaml), *overrides, "--run", "resnet18-sgd-random-t0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------
# Tuning: the pieces
def test_tune_spec_per_run(smoke_yaml):
    sweep = load_sweep(
        smoke_yaml, ["tune={cycles: all, folds: 0.2, grid: {sgd: {lr: [0.01, 0.1], weight_decay: [0, 5.0e-4]}, adam: {}}}"]
    )
    sgd = sweep.run("resnet18-sgd-random-t0").config.tune
    assert sgd == {"cycles": [1, 2, 3], "folds": 0.2, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 5e-4]}}
    assert sweep.run("resnet18-adam-random-t0").config.tune is None  # {}: left untuned
    assert tune.grid_points(sgd["grid"]) == [
        {"lr": 0.01, "weight_decay": 0.0},
        {"lr": 0.01, "weight_decay": 5e-4},
        {"lr": 0.1, "weight_decay": 0.0},
        {"lr": 0.1, "weight_decay": 5e-4},
    ]
    assert tune.cost_multiplier(sgd) == pytest.approx(1 + 4 * 0.8)
    assert tune.cost_multiplier({**sgd, "folds": 3}) == 1 + 4 * 2


@pytest.mark.parametrize("folds", [3, 0.25])
def test_splits_are_stratified_seeded_and_inside_the_labelled_set(folds):
    y = np.repeat(np.arange(4), [30, 20, 12, 10])
    a = tune.splits(y, folds, trial=1, cycle=2)
    assert len(a) == (folds if isinstance(folds, int) else 1)
    for tr, va in a:
        assert not set(tr) & set(va) and set(tr) | set(va) <= set(range(len(y)))
        share = np.bincount(y[va], minlength=4) / len(va)
        assert np.abs(share - np.bincount(y, minlength=4) / len(y)).max() < 0.1  # stratified
    if isinstance(folds, int):
        assert sorted(np.concatenate([va for _, va in a]).tolist()) == list(range(len(y)))  # k-fold covers the set
    b = tune.splits(y, folds, trial=1, cycle=2)
    c = tune.splits(y, folds, trial=1, cycle=3)
    assert all((x[1] == z[1]).all() for x, z in zip(a, b))  # same (trial, cycle): same split
    assert any(not np.array_equal(x[1], z[1]) for x, z in zip(a, c))  # another cycle: another split


def test_selection_takes_the_best_mean_and_the_first_of_ties(smoke_yaml, monkeypatch, tmp_path):
    """With the fits' scores fixed, the choice is the best mean over folds; ties go to grid order."""
    sweep = load_sweep(
        smoke_yaml,
        [
            f"output={tmp_path}",
            "al.cycles=1",
            "tune={cycles: [1], folds: 2, grid: {sgd: {lr: [0.01, 0.02, 0.05, 0.1]}, adam: {}}}",
        ],
    )
    spec = sweep.run("resnet18-sgd-random-t0")
    fixed = {0.01: [0.5, 0.5], 0.02: [0.9, 0.5], 0.05: [0.6, 0.8], 0.1: [0.7, 0.6]}  # means .5 .7 .7 .65
    calls = []

    def fake_fit(run, cycle, hp, train_idx, val_idx, start, where):
        fold = len([c for c in calls if c == hp["lr"]])
        calls.append(hp["lr"])
        return fixed[hp["lr"]][fold]

    monkeypatch.setattr(tuning, "fit_and_score", fake_fit)
    run(spec, sweep.run_dir(spec.run_id), log=quiet)
    row = rows_of(sweep.run_dir(spec.run_id))[0]
    assert row["tuned"] == {"lr": 0.02}  # 0.02 and 0.05 tie at 0.7: the first in grid order
    assert [s["val_accuracy"] for s in row["tune"]["scores"]] == pytest.approx([0.5, 0.7, 0.7, 0.65])
    assert row["tune"]["val_accuracy"] == pytest.approx(0.7)
    assert len(calls) == 8


# ---------------------------------------------------------------------------------------------
# Tuning: end to end on digits
@pytest.fixture
def digits(smoke_yaml, tmp_path):
    def make(*extra, out="a"):
        return load_sweep(smoke_yaml, [f"output={tmp_path / out}", *DIGITS, *extra])

    return make


def test_tuned_run_records_real_validation_scores_and_trains_with_the_winner(digits, monkeypatch):
    sweep = digits(TUNE, "tune.cycles=[1]")
    spec = sweep.run("resnet18-sgd-random-t0")
    used = []
    real = optim_mod.make_optimizer
    monkeypatch.setattr(
        optim_mod, "make_optimizer", lambda name, params, hp, dev: used.append(dict(hp)) or real(name, params, hp, dev)
    )
    run(spec, sweep.run_dir(spec.run_id), log=quiet)
    rows = rows_of(sweep.run_dir(spec.run_id))
    rec = rows[0]["tune"]
    assert [s["params"] for s in rec["scores"]] == [{"lr": 0.001}, {"lr": 0.05}]
    assert all(len(s["fold_accuracy"]) == 2 and 0 <= s["val_accuracy"] <= 1 for s in rec["scores"])
    assert sum(rec["n_val"]) == 60  # 2 folds of the 60 labelled images
    best = max(rec["scores"], key=lambda s: s["val_accuracy"])
    assert rows[0]["tuned"] == best["params"] and rec["val_accuracy"] == best["val_accuracy"]
    assert rec["scores"][0]["val_accuracy"] != rec["scores"][1]["val_accuracy"]  # the fits really differ
    # Cycle 2 is not listed: it reuses the choice, with no new scores; both cycles trained with it.
    assert rows[1]["tuned"] == rows[0]["tuned"] and rows[1]["tune"] is None
    assert rows[0]["tune_time_s"] > 0 and rows[0]["recipe"] is None
    final_fits = [u for u in used if u["lr"] == rows[0]["tuned"]["lr"]]
    assert len(used) == 2 * 2 + 2 and len(final_fits) >= 2 + 1  # 4 tuning fits, then the 2 cycles
    # Score files agree with the row.
    side = json.loads(tune.side_file(sweep.run_dir(spec.run_id), 1).read_text())
    assert sorted(side["scores"]) == ["0:0", "0:1", "1:0", "1:1"]
    assert side["scores"]["1:0"] == rec["scores"][1]["fold_accuracy"][0]


def test_test_labels_never_influence_choices_or_queries(digits, monkeypatch):
    """Only the loaded test labels change: every tuned value, score and queried index is the same."""
    extra = (TUNE, "tune.cycles=[1,2]")
    a = digits(*extra, out="a")
    spec = a.run("resnet18-sgd-entropy-t0")
    run(spec, a.run_dir(spec.run_id), log=quiet)
    real_load = loop_mod.load_data

    def shuffled_test_labels(*args, **kwargs):
        data = real_load(*args, **kwargs)
        g = torch.Generator().manual_seed(5)
        return dataclasses.replace(data, test_y=torch.randint(0, data.n_classes, data.test_y.shape, generator=g))

    monkeypatch.setattr(loop_mod, "load_data", shuffled_test_labels)
    b = digits(*extra, out="b")
    run(spec, b.run_dir(spec.run_id), log=quiet)
    ra, rb = rows_of(a.run_dir(spec.run_id)), rows_of(b.run_dir(spec.run_id))
    for x, y in zip(ra, rb):
        assert x["tuned"] == y["tuned"] and x["tune"] == y["tune"] and x["queried"] == y["queried"]
    assert [x["test_accuracy"] for x in ra] != [y["test_accuracy"] for y in rb]  # the labels did change


def _start(sweep_yaml, overrides, run_id, pause=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", AL_THREADS="1")
    env.pop("AL_PAUSE_AT", None)
    if pause:
        env["AL_PAUSE_AT"] = pause
    return Run([sweep_yaml, *overrides, "--run", run_id], env)


def _wait_stopped(p, timeout=120):
    return wait_stopped(p, timeout)  # test_resume's: paused at its pause point (True) or exited (False)


def test_sigkill_during_tuning_loses_at_most_one_fit_and_resumes_to_identical_rows(smoke_yaml, tmp_path):
    run_id = "resnet18-sgd-learning_loss-t0"
    common = [*DIGITS, TUNE, "tune.cycles=[1,2]"]
    ref = load_sweep(smoke_yaml, [f"output={tmp_path / 'ref'}", *common])
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses' thread count: CPU kernels reproduce bit for bit at a fixed count
    try:
        run(ref.run(run_id), ref.run_dir(run_id), log=quiet)
    finally:
        torch.set_num_threads(torch_threads)
    reference = [comparable(r) for r in rows_of(ref.run_dir(run_id))]

    overrides = [f"output={tmp_path / 'killed'}", *common]
    run_dir = load_sweep(smoke_yaml, overrides).run_dir(run_id)
    # Each process is stopped right before the rename of its first (then second) score write and
    # killed: the scores already on disk are kept, the fit in flight is lost, nothing else.
    kills = 0
    # A kill at the first write keeps nothing; cycle 1 has 4 fits: four kills that keep one fit each
    # finish its tuning; the last kill lands in cycle 2's tuning, after cycle 1's row.
    for pause in ["tune:1", "tune:2", "tune:2", "tune:2", "tune:2", "tune:2"]:
        before = {p.name: len(json.loads(p.read_text())["scores"]) for p in run_dir.glob("tune-c*.json")}
        p = _start(smoke_yaml, overrides, run_id, pause)
        if not _wait_stopped(p):
            break
        p.kill()
        p.wait()
        kills += 1
        after = {p.name: len(json.loads(p.read_text())["scores"]) for p in run_dir.glob("tune-c*.json")}
        n = int(pause.split(":")[1])
        grew = sum(after.values()) - sum(before.values())
        assert grew == n - 1, (before, after)  # the n-th write was cut short: n - 1 new fits kept
    assert kills >= 4
    while not (run_dir / "DONE").exists():
        p = _start(smoke_yaml, overrides, run_id)
        text = p.communicate(timeout=300)[0]
        assert p.returncode == 0, text
    assert [comparable(r) for r in rows_of(run_dir)] == reference
    assert reference[0]["tune"] is not None and reference[1]["tune"] is not None


def test_stop_request_during_tuning_then_resume_gives_the_same_rows(digits, monkeypatch):
    from al_core.train import Interrupted, StopFlag

    a = digits(TUNE, out="a")
    spec = a.run("resnet18-adam-random-t0")
    run(spec, a.run_dir(spec.run_id), log=quiet)
    b = digits(TUNE, out="b")
    stop = StopFlag()
    real_fit = tuning.fit_and_score
    fits = []

    def counting(run_, *args):
        fits.append(1)
        if len(fits) == 2:
            stop.request("SIGTERM")  # honoured inside this fit, after its first step
        return real_fit(run_, *args)

    monkeypatch.setattr(tuning, "fit_and_score", counting)
    with pytest.raises(Interrupted):
        run(spec, b.run_dir(spec.run_id), stop=stop, log=quiet)
    side = json.loads(tune.side_file(b.run_dir(spec.run_id), 1).read_text())
    assert list(side["scores"]) == ["0:0"]  # the first fit is kept
    run(spec, b.run_dir(spec.run_id), log=quiet)
    assert len(fits) == 2 + 3  # the interrupted fit is the only one trained twice
    assert [comparable(r) for r in rows_of(b.run_dir(spec.run_id))] == [comparable(r) for r in rows_of(a.run_dir(spec.run_id))]


# ---------------------------------------------------------------------------------------------
# ll.train_module: always
def test_train_module_always_trains_the_module_and_keeps_random_queries(digits, monkeypatch):
    with_module = []
    real_step = train_mod.train_step

    def spy(model, lossnet, *args):
        with_module.append(lossnet is not None)
        return real_step(model, lossnet, *args)

    monkeypatch.setattr(train_mod, "train_step", spy)
    a = digits(out="a")
    spec_a = a.run("resnet18-sgd-random-t0")
    run(spec_a, a.run_dir(spec_a.run_id), log=quiet)
    assert with_module and not any(with_module)
    with_module.clear()
    b = digits("ll.train_module=always", out="b")
    spec_b = b.run("resnet18-sgd-random-t0")
    assert spec_b.config.to_dict()["ll"]["train_module"] == "always"
    run(spec_b, b.run_dir(spec_b.run_id), log=quiet)
    assert with_module and all(with_module)  # every step trained the module beside the model
    ra, rb = rows_of(a.run_dir(spec_a.run_id)), rows_of(b.run_dir(spec_b.run_id))
    assert [r["queried"] for r in ra] == [r["queried"] for r in rb]  # queries still random, the same ones
    assert [r["train_loss"] for r in ra] != [r["train_loss"] for r in rb]  # the ranking loss shaped training


# ---------------------------------------------------------------------------------------------
# The report: recipe and tuning as columns, the module's own effect
def test_report_carries_recipe_tuning_and_the_module_effect(tmp_path):
    import pandas as pd
    from scipy import stats

    from analysis import build_report
    from bench.synthetic_sweep import write_synthetic_sweep

    sweep_dir = tmp_path / "s"
    ids = write_synthetic_sweep(sweep_dir, models=("resnet18",), optimizers=("sgd", "adam"), trials=(0, 1, 2), cycles=3)
    for run_id in ids:
        d = sweep_dir / "runs" / run_id
        meta = json.loads((d / "run.json").read_text())
        meta["config"].update(recipe="published", tune={"cycles": [1], "folds": 3, "grid": {"lr": [0.01, 0.1]}})
        (d / "run.json").write_text(json.dumps(meta))
        rows = rows_of(d)
        for r in rows:
            r["recipe"], r["tuned"] = "published", {"lr": 0.1 if "sgd" in run_id else 0.01}
            r["tune"] = {"val_accuracy": 0.5, "scores": []} if r["cycle"] == 1 else None
        (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(sweep_dir)
    report = sweep_dir / "report"
    runs = pd.read_csv(report / "runs.csv")
    assert (runs["recipe"] == "published").all() and (runs["tuning"] == "cycles 1; folds 3").all()
    cycles = pd.read_csv(report / "cycles.csv")
    assert set(cycles.loc[cycles["optimizer"] == "sgd", "tuned.lr"]) == {0.1}
    assert cycles.loc[cycles["cycle"] == 1, "tune_val_accuracy"].eq(0.5).all()
    assert "recipe" in pd.read_csv(report / "summary.csv").columns  # an axis of the tables
    effect = pd.read_csv(report / "module_effect.csv")
    assert len(effect) == 2 and (effect["n_pairs"] == 3).all()
    # By other means: scipy's paired t-test of the cycle-1 accuracies.
    first = cycles[(cycles["cycle"] == 1) & (cycles["optimizer"] == "adam")].set_index(["strategy", "trial"])["test_accuracy"]
    ll, rnd = first["learning_loss"].sort_index(), first["random"].sort_index()
    got = effect.set_index("optimizer").loc["adam"]
    assert got["diff_mean"] == pytest.approx((ll - rnd).mean())
    assert got["p_value"] == pytest.approx(stats.ttest_rel(ll, rnd).pvalue)
    assert (report / "tables" / "module_effect.md").exists()


# ---------------------------------------------------------------------------------------------
# optim.decay_exclude_norm_bias and optim.wd_normalized (issue 21)
def test_decay_groups_put_biases_and_norms_of_model_and_lossnet_at_zero_decay():
    from al_core.models import MODELS, LossNet
    from al_core.optim import decay_groups, make_optimizer

    model = MODELS.get("resnet18")(num_classes=10, in_channels=3, width=4)
    lossnet = LossNet(model.stage_channels, 8)
    decay, no_decay = decay_groups([model, lossnet])
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay  # the optimizer's value applies
    assert ids(decay["params"]) | ids(no_decay["params"]) == ids([*model.parameters(), *lossnet.parameters()])
    assert not ids(decay["params"]) & ids(no_decay["params"])
    norms = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    biases = [model.linear.bias, lossnet.out.bias, *(fc.bias for fc in lossnet.fcs)]
    assert ids(norms + biases) == ids(no_decay["params"])
    assert ids([lossnet.out.weight, *(fc.weight for fc in lossnet.fcs)]) <= ids(decay["params"])
    opt = make_optimizer("adamw", decay_groups([model, lossnet]), optimizer_params("adamw", {}, "x"), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_normalized_decay_is_loshchilov_hutters_formula():
    from al_core.optim import normalized_decay

    assert normalized_decay(0.05, 128, 1000, 200) == pytest.approx(0.05 * (128 / (1000 * 200)) ** 0.5)
    # One normalised value, four times the steps: half the per-step decay.
    assert normalized_decay(0.05, 128, 4000, 200) == pytest.approx(normalized_decay(0.05, 128, 1000, 200) / 2)


def test_wd_normalized_scales_each_fit_to_its_own_budget_and_the_row_records_it(digits, monkeypatch):
    sweep = digits(
        "optim.wd_normalized=true",
        "optim.decay_exclude_norm_bias=true",
        "optim.sgd.weight_decay=0.5",
        "tune={cycles: [1], folds: 2, grid: {sgd: {weight_decay: [0.5, 2.0]}, adam: {}}}",
    )
    spec = sweep.run("resnet18-sgd-random-t0")
    used = []
    real = optim_mod.make_optimizer
    monkeypatch.setattr(
        optim_mod,
        "make_optimizer",
        lambda name, params, hp, dev: used.append((dict(hp), params)) or real(name, params, hp, dev),
    )
    run(spec, sweep.run_dir(spec.run_id), log=quiet)
    rows = rows_of(sweep.run_dir(spec.run_id))
    scale = lambda n: (16 / (n * 2)) ** 0.5  # noqa: E731  batch 16, 2 epochs, n training images
    # Four tuning fits on one fold (30 of the 60 labels), then cycles 1 and 2 on 60 and 90 labels.
    fits = [hp["weight_decay"] for hp, _ in used[:4]]
    assert fits == pytest.approx([0.5 * scale(30), 0.5 * scale(30), 2.0 * scale(30), 2.0 * scale(30)])
    lam = rows[0]["tuned"]["weight_decay"]
    assert [r["weight_decay"] for r in rows] == pytest.approx([lam * scale(60), lam * scale(90)])
    assert all(isinstance(p, dict) and p["weight_decay"] == 0.0 for _, groups in used for p in groups[1:])
    cfg = json.loads((sweep.run_dir(spec.run_id) / "run.json").read_text())["config"]
    assert cfg["wd_normalized"] is True and cfg["decay_exclude_norm_bias"] is True


def test_decay_groups_and_normalized_decay_resume_to_the_same_rows(digits):
    from al_core.train import Interrupted, StopFlag

    extra = ("optim.wd_normalized=true", "optim.decay_exclude_norm_bias=true", "optim.adam.weight_decay=0.1")
    spec = digits(*extra).run("resnet18-adam-learning_loss-t0")
    run(spec, digits(*extra).run_dir(spec.run_id), log=quiet)
    ref = [comparable(r) for r in rows_of(digits(*extra).run_dir(spec.run_id))]
    steps = {"n": 0}

    class StopAtStep6(StopFlag):
        @property
        def signame(self):
            steps["n"] += 1
            return "SIGTERM" if steps["n"] == 6 else None

        @signame.setter
        def signame(self, v):
            pass

    other = digits(*extra, out="b")
    with pytest.raises(Interrupted):
        run(spec, other.run_dir(spec.run_id), stop=StopAtStep6(), log=quiet)
    run(spec, other.run_dir(spec.run_id), log=quiet)
    assert [comparable(r) for r in rows_of(other.run_dir(spec.run_id))] == ref
