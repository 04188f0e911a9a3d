"""The arms reviewers ask for: train.augment randaugment, train.swa and dataset.imbalance change
training or the pool, are fingerprinted, recorded in run.json, usable as grid axes, and resume."""

import json

import numpy as np
import pytest
import torch

from al_core import trainer as trainer_mod
from al_core.config import load_sweep
from al_core.data import imbalance
from al_core.data.device import load
from al_core.data.spec import DatasetConfig
from al_core.errors import ConfigError
from al_core.loop import run
from al_core.results import comparable
from al_core.train import epoch_plan, randaugment
from test_tune import DIGITS, quiet, rows_of

RUN = "resnet18-sgd-random-t0"
ONE_CYCLE = [*DIGITS, "al.cycles=1", "train.epochs=2"]


@pytest.fixture
def digits(smoke_yaml, tmp_path):
    def make(*extra, out="a"):
        return load_sweep(smoke_yaml, [f"output={tmp_path / out}", *ONE_CYCLE, *extra])

    return make


@pytest.fixture
def evaluated(monkeypatch):
    """The weights and BatchNorm statistics of every model evaluated, flattened."""
    seen = []
    real = trainer_mod.Trainer.evaluate

    def spy(self, cur):
        seen.append(torch.cat([v.flatten().float() for v in cur.model.state_dict().values()]))
        return real(self, cur)

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", spy)
    return seen


def test_keys_are_fingerprinted_recorded_and_left_out_at_their_defaults(smoke_yaml):
    base = load_sweep(smoke_yaml).run(RUN).config
    assert not {"augment", "swa", "warmup"} & set(base.to_dict()["train"]) and "imbalance" not in base.to_dict()["dataset"]
    prints = {base.fingerprint()}
    for extra in ("train.augment=randaugment", "train.swa=0.25", "dataset.imbalance={ratio: 100}"):
        cfg = load_sweep(smoke_yaml, [extra]).run(RUN).config
        section, key = extra.split("=")[0].split(".")
        assert key in cfg.to_dict()[section]
        prints.add(cfg.fingerprint())
    assert len(prints) == 4
    axes = load_sweep(smoke_yaml, ["grid.train.augment=[standard, randaugment]", "grid.train.swa=[0, 0.25]"])
    ids = {s.run_id for s in axes.runs() if s.optimizer == "sgd" and s.strategy == "random" and s.trial == 0}
    assert len(ids) == 4 and any("randaugment" in i for i in ids)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.augment=autoaugment", "train.augment: expected one of standard, randaugment"),
        ("train.swa=1.5", "train.swa: expected a fraction"),
        ("dataset.imbalance=0.5", "dataset.imbalance: expected null or a ratio >= 1"),
        ("dataset.imbalance=.inf", "dataset.imbalance"),
        ("dataset.imbalance={ratio: 10, profile: step}", "dataset.imbalance: expected {ratio: R, profile: exponential}"),
    ],
)
def test_bad_values_are_refused(smoke_yaml, override, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(smoke_yaml, [override])


def test_randaugment_draws_per_image_from_the_step_seed(digits):
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    a, b, c = randaugment(x, 1), randaugment(x, 1), randaugment(x, 2)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    data = load("digits", "data", torch.device("cpu"))
    labelled = torch.arange(64)
    plain = epoch_plan(data, labelled, 0, 1, 0, 32)
    strong = epoch_plan(data, labelled, 0, 1, 0, 32, "randaugment")
    assert torch.equal(plain.order, strong.order)  # the same order, crops and flips underneath
    xs, _ = plain.inputs(data, 0, False)
    xa, _ = strong.inputs(data, 0, False)
    xb, _ = epoch_plan(data, labelled, 0, 1, 0, 32, "randaugment").inputs(data, 0, False)
    assert not torch.equal(xs, xa) and torch.equal(xa, xb)


def test_randaugment_and_swa_change_training_and_reproduce(digits, evaluated):
    rows = {}
    for name, extra in [("base", []), ("ra", ["train.augment=randaugment"]), ("swa", ["train.swa=0.5"])]:
        sweep = digits(*extra, out=name)
        run(sweep.run(RUN), sweep.run_dir(RUN), log=quiet)
        rows[name] = (rows_of(sweep.run_dir(RUN)), evaluated[-1])
        assert json.loads((sweep.run_dir(RUN) / "run.json").read_text())["config"]["train"].get(
            {"base": "epochs", "ra": "augment", "swa": "swa"}[name]
        )
    base_rows, base_w = rows["base"]
    ra_rows, ra_w = rows["ra"]
    swa_rows, swa_w = rows["swa"]
    assert ra_rows[0]["train_loss"] != base_rows[0]["train_loss"]  # other images were trained on
    assert swa_rows[0]["train_loss"] == base_rows[0]["train_loss"]  # SWA trains the same steps ...
    assert not torch.equal(swa_w, base_w) and not torch.equal(ra_w, base_w)  # ... and keeps another model
    again = digits("train.augment=randaugment", out="ra2")
    run(again.run(RUN), again.run_dir(RUN), log=quiet)
    assert [comparable(r) for r in rows_of(again.run_dir(RUN))] == [comparable(r) for r in ra_rows]


def test_swa_averages_the_last_epochs_and_resumes_mid_average(digits, monkeypatch):
    from al_core.train import Interrupted, StopFlag

    extra = ["train.epochs=4", "train.swa=0.5", "train.checkpoint_every=1"]
    a = digits(*extra, out="a")
    run(a.run(RUN), a.run_dir(RUN), log=quiet)
    b = digits(*extra, out="b")
    stop = StopFlag()
    real = trainer_mod.end_epoch
    averaged = []

    def spy(cur, *args):
        real(cur, *args)
        averaged.append(cur.swa.n_averaged.item() if cur.swa is not None else 0)
        if cur.epoch == 3 and len(averaged) == 3:
            stop.request("SIGTERM")  # after the first averaged epoch: the average is in the checkpoint

    monkeypatch.setattr(trainer_mod, "end_epoch", spy)
    with pytest.raises(Interrupted):
        run(b.run(RUN), b.run_dir(RUN), stop=stop, log=quiet)
    run(b.run(RUN), b.run_dir(RUN), log=quiet)
    assert averaged == [0, 0, 1, 2]  # epochs 3 and 4 of 4 averaged; the resumed process went on from 1
    assert [comparable(r) for r in rows_of(b.run_dir(RUN))] == [comparable(r) for r in rows_of(a.run_dir(RUN))]


def test_imbalance_keeps_an_exponential_profile_and_a_balanced_test_set():
    assert imbalance.counts(np.array([50, 60, 55, 70]), 8).tolist() == [50, 25, 12, 6]  # 50 * 8 ** (-c / 3)
    assert imbalance.counts(np.array([6000] * 10), 100).tolist()[::9] == [6000, 60]
    full = load("digits", "data", torch.device("cpu"))
    tail = load("digits", "data", torch.device("cpu"), DatasetConfig(name="digits", imbalance={"ratio": 10}))
    head = int(np.bincount(full.pool_y.numpy()).min())
    got = np.bincount(tail.pool_y.numpy(), minlength=10)
    assert got.tolist() == imbalance.counts(np.bincount(full.pool_y.numpy()), 10).tolist()
    assert got[0] == head and got[-1] == head // 10
    assert torch.equal(tail.test_y, full.test_y) and torch.equal(tail.test_x, full.test_x)
    assert tail.spec.pool_size == got.sum()
    again = load("digits", "data", torch.device("cpu"), DatasetConfig(name="digits", imbalance=10))
    assert torch.equal(again.pool_x, tail.pool_x)  # one long-tailed pool, whatever the run
