"""One run end to end on smoke data: loop invariants, determinism, resume between and inside cycles."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from al_core import checkpoint
from al_core.config import ConfigError, load_sweep
from al_core.loop import Run, run
from al_core.train import Interrupted, StopFlag
from al_core import query, results
from al_core.results import comparable


def rows_of(run_dir):
    return [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]


def quiet(_):
    pass


@pytest.fixture
def sweep(smoke_yaml):
    return load_sweep(smoke_yaml)


@pytest.mark.parametrize("run_id", ["resnet18-sgd-learning_loss-t0", "resnet18-adam-entropy-t1"])
def test_loop_invariants(sweep, run_id):
    spec = sweep.run(run_id)
    run_dir = sweep.run_dir(run_id)
    assert run(spec, run_dir, log=quiet) == "done"
    rows = rows_of(run_dir)
    al = spec.config.al
    assert [r["cycle"] for r in rows] == [1, 2, 3]
    for r in rows:  # every field of the row, in order, of its type (null where a CPU cannot measure it)
        assert [k for k in r if k in results.FIELDS] == list(results.FIELDS)
        assert all(t is None or r[k] is None or isinstance(r[k], t) for k, t in {**results.KEYS, **results.MEASURES}.items())
    seen = set()
    for i, r in enumerate(rows):
        assert r["n_labeled"] == al.initial_size + i * al.query_size
        assert len(r["queried"]) == (al.initial_size if i == 0 else al.query_size)
        assert not seen & set(r["queried"])  # never queried twice; always from the unlabelled pool
        seen |= set(r["queried"])
        assert all(0 <= q < r["n_pool"] for q in r["queried"])
        assert sum(r["queried_class_counts"]) == len(r["queried"]) and len(r["queried_class_counts"]) == 10
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["test_macro_f1"] <= 1
        assert r["peak_mem_bytes"] is None and r["energy_j"] is None and r["device"] == "cpu"
    assert (run_dir / "DONE").exists()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["strategy"] == spec.strategy and meta["fingerprint"] == spec.config.fingerprint()
    assert not checkpoint.list_checkpoints(run_dir)  # a finished run keeps no model state


def test_f1_and_accuracy_equal_sklearn_on_the_final_model(sweep):
    spec = sweep.run("resnet18-sgd-entropy-t0")
    run_dir = sweep.run_dir(spec.run_id)
    states = []
    real_save = checkpoint.save
    with pytest.MonkeyPatch.context() as mp:  # keep the last checkpoint's state as the loop wrote it
        mp.setattr(checkpoint, "save", lambda d, pos, fp, state: (states.append((pos, state)), real_save(d, pos, fp, state))[1])
        run(spec, run_dir, log=quiet)
    last = rows_of(run_dir)[-1]
    pos, state = states[-1]
    assert (pos.cycle, pos.epoch) == (3, spec.config.train.epochs)
    r = Run(spec, run_dir, log=quiet)
    from al_core.data import load
    from al_core.train import predict

    r.trainer.data = load("synthetic", "", torch.device("cpu"))
    model, _ = r.trainer.fresh_model(3)
    model.load_state_dict(state["model"])
    pred = predict(model, None, r.trainer.data, r.trainer.data.test_x, 256, r.trainer.amp).probs.argmax(1).numpy()
    y = r.trainer.data.test_y.numpy()
    assert last["test_macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert last["test_accuracy"] == pytest.approx((pred == y).mean(), abs=1e-12)
    per_class = [np.mean(pred[y == k] == k) for k in range(10)]
    assert last["per_class_accuracy"] == pytest.approx(per_class)


def test_same_config_twice_gives_identical_rows_and_no_state_leaks(sweep, tmp_path):
    a = sweep.run("resnet18-sgd-learning_loss-t0")
    other = sweep.run("resnet18-adam-learning_loss-t1")
    run(a, tmp_path / "a1", log=quiet)
    run(other, tmp_path / "other", log=quiet)  # another run in the same process in between
    run(a, tmp_path / "a2", log=quiet)
    assert [comparable(r) for r in rows_of(tmp_path / "a1")] == [comparable(r) for r in rows_of(tmp_path / "a2")]


def test_trials_share_initial_set_and_weights_across_optimizers_and_strategies(sweep, tmp_path):
    ids = ["resnet18-sgd-random-t0", "resnet18-adam-entropy-t0", "resnet18-sgd-learning_loss-t0"]
    firsts = []
    for run_id in ids:
        spec = sweep.run(run_id)
        r = Run(spec, tmp_path / run_id, log=quiet)
        from al_core.data import load

        r.trainer.data = load("synthetic", "", torch.device("cpu"))
        firsts.append((query.initial_set(r.cfg, r.strategy, r.trainer), r.trainer.fresh_model(1)[0].state_dict()))
    for queried, weights in firsts[1:]:
        assert queried == firsts[0][0]
        assert all(torch.equal(weights[k], firsts[0][1][k]) for k in weights)
    other_trial = Run(sweep.run("resnet18-sgd-random-t1"), tmp_path / "x", log=quiet)
    other_trial.trainer.data = load("synthetic", "", torch.device("cpu"))
    assert query.initial_set(other_trial.cfg, other_trial.strategy, other_trial.trainer) != firsts[0][0]


class CrashAfter(Exception):
    pass


def test_crash_between_cycles_then_resume_gives_same_rows(sweep, tmp_path):
    spec = sweep.run("resnet18-sgd-learning_loss-t0")
    run(spec, tmp_path / "ref", log=quiet)

    def crash(line):
        if "cycle 2/3" in line:
            raise CrashAfter

    with pytest.raises(CrashAfter):
        run(spec, tmp_path / "b", log=crash)
    assert len(rows_of(tmp_path / "b")) == 2 and not (tmp_path / "b" / "DONE").exists()
    run(spec, tmp_path / "b", log=quiet)
    assert [comparable(r) for r in rows_of(tmp_path / "ref")] == [comparable(r) for r in rows_of(tmp_path / "b")]
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert meta["restarts"] == 1


@pytest.mark.parametrize("reset", [True, False])
def test_stop_request_inside_a_cycle_then_resume_gives_same_rows(smoke_yaml, tmp_path, reset):
    sweep = load_sweep(smoke_yaml, [f"train.reset={str(reset).lower()}", "al.initial=strategy", "al.subset=500"])
    spec = sweep.run("resnet18-adam-learning_loss-t0")
    run(spec, tmp_path / "ref", log=quiet)
    steps = {"n": 0}

    class CountingStop(StopFlag):
        @property
        def signame(self):
            steps["n"] += 1
            return "SIGTERM" if steps["n"] in (7, 40) else None

        @signame.setter
        def signame(self, v):
            pass

    interrupts = 0
    while True:
        try:
            run(spec, tmp_path / "b", stop=CountingStop(), log=quiet)
            break
        except Interrupted:
            interrupts += 1
            steps["n"] += 1000 if interrupts > 1 else 0
    assert interrupts == 2
    assert [comparable(r) for r in rows_of(tmp_path / "ref")] == [comparable(r) for r in rows_of(tmp_path / "b")]


def test_done_run_is_a_no_op_and_config_change_is_refused(sweep, smoke_yaml, tmp_path):
    spec = sweep.run("resnet18-sgd-random-t0")
    run(spec, tmp_path / "r", log=quiet)
    before = (tmp_path / "r" / "cycles.jsonl").read_bytes()
    said = []
    assert run(spec, tmp_path / "r", log=said.append) == "already done"
    assert "already done" in said[0] and (tmp_path / "r" / "cycles.jsonl").read_bytes() == before
    changed = load_sweep(smoke_yaml, ["train.epochs=5", "optim.sgd.lr=0.05"]).run(spec.run_id)
    with pytest.raises(ConfigError, match=r"differs in optim\.lr, train\.epochs"):
        run(changed, tmp_path / "r", log=quiet)
    assert run(changed, tmp_path / "r", restart=True, log=quiet) == "done"
    assert rows_of(tmp_path / "r")[0]["run_id"] == spec.run_id


def test_cuda_graphs_key_leaves_cpu_training_unchanged_and_refuses_dropout(smoke_yaml, tmp_path):
    """train.cuda_graphs is a CUDA path: on a CPU the run trains eagerly, row for row the same."""
    rows = {}
    for graphs in ("false", "true"):
        sw = load_sweep(smoke_yaml, [f"output={tmp_path / graphs}", f"train.cuda_graphs={graphs}", "al.cycles=2"])
        spec = sw.run("resnet18-sgd-learning_loss-t0")
        assert run(spec, sw.run_dir(spec.run_id), log=quiet) == "done"
        rows[graphs] = [comparable(r) for r in rows_of(sw.run_dir(spec.run_id))]
    assert rows["true"] == rows["false"]
    with pytest.raises(ConfigError, match="train.cuda_graphs"):
        load_sweep(smoke_yaml, ["train.cuda_graphs=true", "train.dropout=0.2"]).runs()


def test_deterministic_mode_and_the_cpu_scoring_batch_leave_rows_unchanged(smoke_yaml, tmp_path):
    """train.deterministic and train.eval_batch_size: auto (64 on a CPU) against 1024: row for row
    the same on a CPU (scores at 64 and 1024 are bit-identical there, BENCHMARKS.md)."""
    from al_core.train import EVAL_BATCH_AUTO, set_deterministic

    rows, meta = {}, {}
    cases = {"plain": ["train.eval_batch_size=1024"], "det": ["train.deterministic=true", "train.eval_batch_size=auto"]}
    for name, extra in cases.items():
        sw = load_sweep(smoke_yaml, [f"output={tmp_path / name}", "al.cycles=2", *extra])
        spec = sw.run("resnet18-sgd-learning_loss-t0")
        try:
            r = Run(spec, sw.run_dir(spec.run_id), log=quiet)
            assert r.trainer.eval_batch_size == (EVAL_BATCH_AUTO["cpu"] if name == "det" else 1024)
            assert torch.are_deterministic_algorithms_enabled() is (name == "det")
            assert r.execute() == "done"
        finally:
            set_deterministic(False)  # process-wide: later tests run as a plain run would
        rows[name] = rows_of(sw.run_dir(spec.run_id))
        meta[name] = json.loads((sw.run_dir(spec.run_id) / "run.json").read_text())
    assert [r["deterministic"] for r in rows["det"]] == [True, True]
    assert [r["deterministic"] for r in rows["plain"]] == [False, False]
    assert meta["det"]["provenance"]["eval_batch_size"] == EVAL_BATCH_AUTO["cpu"]
    assert meta["det"]["provenance"]["deterministic"] is True and meta["det"]["config"]["train"]["deterministic"] is True
    assert meta["det"]["config"]["train"]["eval_batch_size"] == 1024  # auto is recorded as the old default
    strip = lambda rs: [{k: v for k, v in comparable(r).items() if k != "deterministic"} for r in rs]  # noqa: E731
    assert strip(rows["det"]) == strip(rows["plain"])
