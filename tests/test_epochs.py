"""Per-epoch training curves: epochs.jsonl per run (identical after an interruption and resume),
TensorBoard event files with train.tensorboard: true, and the report's training-curves figure."""

import json
from pathlib import Path

import pytest

from al_core import checkpoint
from al_core.config import load_sweep
from al_core.io import read_jsonl
from al_core.loop import run
from al_core.train import Interrupted, StopFlag

RUN_ID = "resnet18-sgd-random-t0"
SMOKE = Path(__file__).resolve().parents[1] / "jobs" / "smoke.yaml"


def stop_at(n):
    calls = {"n": 0}

    class StopAt(StopFlag):
        @property
        def signame(self):
            calls["n"] += 1
            return "SIGTERM" if calls["n"] == n else None

        @signame.setter
        def signame(self, value):
            pass

    return StopAt()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    sweep = load_sweep(SMOKE, [f"output={tmp_path_factory.mktemp('ref')}"])
    run(sweep.run(RUN_ID), sweep.run_dir(RUN_ID), log=lambda s: None)
    return sweep.run_dir(RUN_ID)


def test_epochs_file_has_every_epoch_and_matches_the_rows(reference):
    epochs = read_jsonl(reference / "epochs.jsonl")
    rows = read_jsonl(reference / "cycles.jsonl")
    assert [(e["cycle"], e["epoch"]) for e in epochs] == [(c, e) for c in (1, 2, 3) for e in (1, 2, 3, 4)]
    assert set(epochs[0]) == {"cycle", "epoch", "train_loss", "train_accuracy", "lr"}
    for row in rows:  # the row's train_loss/accuracy are those of the cycle's last epoch
        last = [e for e in epochs if e["cycle"] == row["cycle"]][-1]
        assert last["train_loss"] == pytest.approx(row["train_loss"]) and last["train_accuracy"] == pytest.approx(
            row["train_accuracy"]
        )
    assert epochs[0]["lr"] == pytest.approx(0.1)  # sgd's default lr, the first epoch of the schedule
    assert not (reference / "tensorboard").exists()


@pytest.mark.parametrize("at_check, lose_checkpoints", [(7, False), (30, True)])
def test_epochs_file_is_identical_after_an_interruption(reference, tmp_path, at_check, lose_checkpoints):
    sweep = load_sweep(SMOKE, [f"output={tmp_path / 'cut'}"])
    spec, run_dir = sweep.run(RUN_ID), sweep.run_dir(RUN_ID)
    with pytest.raises(Interrupted):
        run(spec, run_dir, stop=stop_at(at_check), log=lambda s: None)
    if lose_checkpoints:
        for p in checkpoint.list_checkpoints(run_dir):
            p.unlink()
    run(spec, run_dir, log=lambda s: None)
    assert (run_dir / "epochs.jsonl").read_bytes() == (reference / "epochs.jsonl").read_bytes()


def test_tensorboard_event_files_when_asked(smoke_yaml, tmp_path):
    sweep = load_sweep(smoke_yaml, [f"output={tmp_path}", "train.tensorboard=true", "al.cycles=2"])
    run(sweep.run(RUN_ID), sweep.run_dir(RUN_ID), log=lambda s: None)
    events = list((sweep.run_dir(RUN_ID) / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(sweep.run_dir(RUN_ID) / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/accuracy", "train/lr", "test/accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))


def test_report_draws_the_training_curves_of_a_chosen_group(smoke_yaml, tmp_path):
    from analysis.build import compute_tables, load, write_report
    from analysis.curves import load_epochs, select

    overrides = [f"output={tmp_path}", "grid.strategy=[random]", "grid.optimizer=[sgd]", "al.cycles=2", "train.epochs=2"]
    sweep = load_sweep(smoke_yaml, overrides)
    for spec in sweep.runs():
        run(spec, sweep.run_dir(spec.run_id), log=lambda s: None)
    tables = compute_tables(load(sweep.sweep_dir, sweep))
    epochs = load_epochs(sweep.sweep_dir, tables.runs, tables.keys)
    assert len(epochs) == 2 * 2 * 2 and epochs["step"].tolist()[:4] == [1, 2, 3, 4]
    rows, hue, _ = select(epochs, "resnet18-sgd-random")
    assert hue == "trial_label" and sorted(rows["trial"].unique()) == [0, 1]
    assert select(epochs, "resnet18-sgd-random-t1")[0]["run_id"].unique().tolist() == ["resnet18-sgd-random-t1"]
    html = write_report(tables, curves="resnet18-sgd-random").read_text()
    assert (sweep.sweep_dir / "report" / "figures" / "training_curves.png").stat().st_size > 1000
    assert "Training loss, training accuracy and learning rate" in html
    assert (
        json.loads((sweep.run_dir("resnet18-sgd-random-t0") / "run.json").read_text())["config"]["train"].get(
            "tensorboard", False
        )
        is False
    )
