"""The tuning search: equal budgets per optimizer, seeded quasi-random draws over each optimizer's
own hyper-parameters, edge flags, and the per-optimizer schedule recipe."""

import json

import pytest
import torch

from al_core import optim as optim_mod
from al_core import tune, tuning
from al_core.config import load_sweep
from al_core.errors import ConfigError
from al_core.loop import run
from al_core.results import comparable
from test_tune import DIGITS, quiet, rows_of

SEARCH = (
    "tune={cycles: [1], folds: 2, points: 3, grid: {"
    "sgd: {lr: {low: 0.01, high: 0.2}, momentum: {low: 0.8, high: 0.95, scale: linear}},"
    "adam: {lr: {low: 1.0e-4, high: 3.0e-3}, beta2: {low: 0.9, high: 0.9999, scale: log1m}, eps: {low: 1.0e-8, high: 1.0e-6}}}}"
)


@pytest.fixture
def digits(smoke_yaml, tmp_path):
    def make(*extra, out="a"):
        return load_sweep(smoke_yaml, [f"output={tmp_path / out}", *DIGITS, *extra])

    return make


def test_every_optimizer_gets_the_same_configurations_folds_and_epochs(smoke_yaml):
    sweep = load_sweep(smoke_yaml, [SEARCH, "train.epochs=7"])
    budgets = {s.optimizer: tune.budget(s.config.tune, s.config.train.epochs) for s in sweep.runs()}
    assert budgets["sgd"] == budgets["adam"] == {"configurations": 3, "fits": 6, "epochs": 42}
    # Each searches its own hyper-parameters.
    spaces = {s.optimizer: list(s.config.tune["grid"]) for s in sweep.runs()}
    assert spaces == {"sgd": ["lr", "momentum"], "adam": ["lr", "beta2", "eps"]}
    grid = load_sweep(
        smoke_yaml,
        ["tune={grid: {sgd: {lr: [0.01, 0.1], weight_decay: [0, 1.0e-4]}, adam: {lr: [1.0e-4, 1.0e-3], eps: [1.0e-8, 1.0e-6]}}}"],
    )
    assert {tune.budget(s.config.tune, 4)["fits"] for s in grid.runs()} == {4 * 3}


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "{grid: {sgd: {lr: [0.01, 0.1]}, adam: {lr: [1.0e-4, 1.0e-3, 3.0e-3]}}}",
            "tune.grid: unequal tuning budgets (sgd 2, adam 3",
        ),
        (
            "{points: 4, grid: {sgd: {lr: {low: 0.01, high: 0.1}}, adam: {lr: [1.0e-4, 1.0e-3]}}}",
            "unequal tuning budgets (sgd 4, adam 2",
        ),
        ("{grid: {sgd: {lr: {low: 0.01, high: 0.1}}, adam: {}}}", "tune.points: expected an integer >= 1"),
        ("{points: 4, grid: {sgd: {lr: [0.1]}, adam: {}}}", "tune.points: expected no value without a range"),
        ("{points: 4, grid: {sgd: {lr: {low: 0.1, high: 0.01}}, adam: {}}}", "tune.grid.sgd.lr: expected numbers low < high"),
        ("{points: 4, grid: {sgd: {weight_decay: {low: 0, high: 0.01}}, adam: {}}}", "scale log needs low > 0"),
        (
            "{points: 4, grid: {sgd: {lr: {low: 0.01, high: 0.1, scale: cubic}}, adam: {}}}",
            "tune.grid.sgd.lr.scale: expected one of log",
        ),
        ("{points: 4, grid: {sgd: {lr: {low: 0.01}}, adam: {}}}", "tune.grid.sgd.lr: expected a range {low, high, scale}"),
        (
            "{points: 4, grid: {adam: {beta2: {low: 0.9, high: 1.0, scale: log1m}}, sgd: {}}}",
            "tune.grid.adam.beta2: expected a number in [0, 1)",
        ),
        ("{points: 4, grid: {sgd: {beta2: {low: 0.9, high: 0.99}}, adam: {}}}", "unknown key tune.grid.sgd.beta2"),
    ],
)
def test_bad_search_specs_are_refused_naming_the_key(smoke_yaml, value, message):
    with pytest.raises(ConfigError) as e:
        load_sweep(smoke_yaml, [f"tune={value}"])
    assert message in str(e.value)


def test_draws_are_seeded_by_trial_and_cycle_inside_their_ranges():
    spec = tune.for_run(
        {
            "points": 16,
            "grid": {
                "adam": {
                    "lr": {"low": 1e-4, "high": 1e-2},
                    "beta2": {"low": 0.9, "high": 0.9999, "scale": "log1m"},
                    "eps": [1e-8, 1e-6],
                }
            },
        },
        "adam",
        3,
    )
    a = tune.configurations(spec, 0, 1)
    assert a == tune.configurations(spec, 0, 1)  # the same draws again (a resumed process)
    assert a != tune.configurations(spec, 1, 1) and a != tune.configurations(spec, 0, 2)
    assert len(a) == 16 and len({json.dumps(p, sort_keys=True) for p in a}) == 16
    assert all(1e-4 <= p["lr"] <= 1e-2 and 0.9 <= p["beta2"] <= 0.9999 and p["eps"] in (1e-8, 1e-6) for p in a)
    # Quasi-random: the draws cover the log range evenly (each decade of lr holds about half).
    assert 5 <= sum(p["lr"] < 1e-3 for p in a) <= 11
    # beta2 goes into Adam's betas; beta1 stays.
    assert tune.as_params({"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8}, a[0]) == {
        "lr": a[0]["lr"],
        "betas": [0.9, a[0]["beta2"]],
        "eps": a[0]["eps"],
    }


def test_edges_of_lists_and_ranges():
    spec = {"grid": {"lr": {"low": 0.01, "high": 1.0, "scale": "log"}, "momentum": [0.8, 0.9, 0.95], "nesterov": [False, True]}}
    assert tune.edges(spec, {"lr": 0.1, "momentum": 0.9, "nesterov": True}) == {}
    assert tune.edges(spec, {"lr": 0.011, "momentum": 0.95}) == {"lr": "low", "momentum": "high"}
    assert tune.edges(spec, {"lr": 0.7, "momentum": 0.8}) == {"lr": "high", "momentum": "low"}  # log10: 0.92 of the range
    beta = {"grid": {"beta2": {"low": 0.9, "high": 0.9999, "scale": "log1m"}}}
    assert tune.edges(beta, {"beta2": 0.99}) == {} and tune.edges(beta, {"beta2": 0.99985}) == {"beta2": "high"}


def test_searched_run_records_every_draw_the_choice_and_its_edges_and_trains_with_it(digits, monkeypatch):
    sweep = digits(SEARCH)
    spec = sweep.run("resnet18-adam-random-t0")
    used = []
    real = optim_mod.make_optimizer
    monkeypatch.setattr(
        optim_mod, "make_optimizer", lambda name, params, hp, dev: used.append(dict(hp)) or real(name, params, hp, dev)
    )
    run(spec, sweep.run_dir(spec.run_id), log=quiet)
    rows = rows_of(sweep.run_dir(spec.run_id))
    rec = rows[0]["tune"]
    draws = tune.configurations(spec.config.tune, 0, 1)
    assert [s["params"] for s in rec["scores"]] == draws
    assert rows[0]["tuned"] in draws and rec["edges"] == tune.edges(spec.config.tune, rows[0]["tuned"])
    assert rec["space"] == spec.config.tune["grid"]
    chosen = rows[0]["tuned"]
    final = used[-1]  # cycle 2 trains with the cycle-1 choice
    assert final["lr"] == chosen["lr"] and final["betas"] == [0.9, chosen["beta2"]] and final["eps"] == chosen["eps"]
    assert len(used) == 3 * 2 + 2
    side = json.loads(tune.side_file(sweep.run_dir(spec.run_id), 1).read_text())
    assert side["points"] == draws


def test_search_resumes_after_a_stop_to_the_same_draws_and_rows(digits, monkeypatch):
    from al_core.train import Interrupted, StopFlag

    a = digits(SEARCH, out="a")
    spec = a.run("resnet18-sgd-random-t0")
    run(spec, a.run_dir(spec.run_id), log=quiet)
    b = digits(SEARCH, out="b")
    stop, fits, real_fit = StopFlag(), [], tuning.fit_and_score

    def counting(run_, *args):
        fits.append(1)
        if len(fits) == 3:
            stop.request("SIGTERM")
        return real_fit(run_, *args)

    monkeypatch.setattr(tuning, "fit_and_score", counting)
    with pytest.raises(Interrupted):
        run(spec, b.run_dir(spec.run_id), stop=stop, log=quiet)
    side = tune.side_file(b.run_dir(spec.run_id), 1)
    assert list(json.loads(side.read_text())["scores"]) == ["0:0", "0:1"]
    run(spec, b.run_dir(spec.run_id), log=quiet)
    assert len(fits) == 3 + 4  # only the interrupted fit trained twice
    assert [comparable(r) for r in rows_of(b.run_dir(spec.run_id))] == [comparable(r) for r in rows_of(a.run_dir(spec.run_id))]
    # A side file of other draws is not reused (the draws are checked, not only the fingerprint).
    data = json.loads(side.read_text())
    fingerprint = data["fingerprint"]
    assert tune.read_side(side, fingerprint, data["labelled_sha256"], data["points"])[0]
    assert tune.read_side(side, fingerprint, data["labelled_sha256"], data["points"][::-1]) == ({}, 0.0)


# ---------------------------------------------------------------------------------------------
# The schedule recipe per optimizer
def test_warmup_cosine_ramps_then_decays():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = optim_mod.make_scheduler(opt, "warmup_cosine", 20, (0.8,), 0.1, warmup=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 3) and lrs[1] == pytest.approx(2 / 3) and lrs[2] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.01


def test_optim_schedule_gives_each_optimizer_its_own_schedule(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["optim.schedule={sgd: multistep, adam: warmup_cosine}", "train.schedule=cosine"])
    got = {s.optimizer: s.config.train.schedule for s in sweep.runs()}
    assert got == {"sgd": "multistep", "adam": "warmup_cosine"}
    one = load_sweep(smoke_yaml, ["optim.schedule=warmup_cosine", "train.warmup=0.2"])
    assert {s.config.train.schedule for s in one.runs()} == {"warmup_cosine"}
    assert one.runs()[0].config.fingerprint() != sweep.runs()[0].config.fingerprint()
    # At its default the warm-up key stays out of the recorded config (older runs keep their fingerprint).
    plain = load_sweep(smoke_yaml).runs()[0].config
    assert "warmup" not in plain.to_dict()["train"]
    for bad, message in [
        ("optim.schedule=linear", "optim.schedule: expected one of"),
        ("optim.schedule={sgd: step}", "optim.schedule.sgd"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_sweep(smoke_yaml, [bad])
    with pytest.raises(ConfigError, match="train.warmup"):
        load_sweep(smoke_yaml, ["train.warmup=1.5"])


@pytest.mark.parametrize("name", ["cifar10-fair", "fmnist-fair", "fmnist-search"])
def test_the_fair_sweeps_search_each_optimizers_own_hyper_parameters_with_equal_budgets(name):
    from pathlib import Path

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "jobs" / f"{name}.yaml")
    own = {"sgd": {"momentum"}, "adam": {"eps", "beta2"}, "adamw": {"eps", "beta2"}, "rmsprop": {"alpha"}}
    budgets = set()
    for spec in sweep.runs():
        cfg = spec.config
        assert cfg.tune is not None and "points" in cfg.tune and cfg.train.schedule == "warmup_cosine"
        assert {"lr", "weight_decay"} | own[spec.optimizer] <= set(cfg.tune["grid"])
        budgets.add(tuple(tune.budget(cfg.tune, cfg.train.epochs).values()))
    assert len(budgets) == 1
