"""The sweep finishes itself (issue 22), without a cluster: the report job's script and its
replacement, mail options, the cost line of a plan, and W&B tracking in offline mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_core import tracking
from al_core.config import load_sweep
from al_core.errors import ConfigError
from al_core.loop import run
from al_core.results import comparable
from slurm import cost, ledger, profiles, report_job, scheduler, submit
from slurm.plan import make_plan
from slurm.sweep import main as sweep_main
from tests._forked import Run, run as forked_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "train.epochs=1", "al.initial_size=50"]
TINY += ["al.query_size=50"]
WANDB = "tracking={wandb: {project: al-test}}"


# ----------------------------------------------------------------------------------------------
# mail and the report job's resources
def test_mail_options_reach_the_arrays_and_the_report_job(smoke_yaml, tmp_path):
    sweep = load_sweep(smoke_yaml)
    r = profiles.resolve({"profile": "speed", "mail_user": "me@example.org", "mail_type": "end,fail"})
    text = submit.sbatch_script(sweep, r, tmp_path, 4)
    assert "#SBATCH --mail-type=END,FAIL" in text and "#SBATCH --mail-user=me@example.org" in text
    job = report_job.script(sweep, r, str(smoke_yaml), ["al.cycles=2"], ["12", "15"], tmp_path / "r.out")
    assert "#SBATCH --mail-type=END,FAIL" in job and "#SBATCH --mail-user=me@example.org" in job
    assert "#SBATCH --dependency=afterany:12:15" in job and "#SBATCH --partition=ps" in job
    assert "#SBATCH --gpus" not in job and "#SBATCH --cpus-per-task=1" in job and "#SBATCH --mem=4G" in job
    assert f"-m analysis.report {smoke_yaml.resolve()} al.cycles=2" in job and "analysis.power" in job


@pytest.mark.parametrize(
    "slurm, key",
    [
        ({"mail_type": "END,SOMETIMES"}, "slurm.mail_type"),
        ({"mail_type": ""}, "slurm.mail_type"),
        ({"mail_user": "me; rm -rf"}, "slurm.mail_user"),
        ({"report_job": "yes"}, "slurm.report_job"),
        ({"report": {"gpus": 1}}, "slurm.report"),
        ({"report": {"time": 0}}, "slurm.report.time"),
    ],
)
def test_bad_mail_and_report_values_name_the_key(slurm, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        profiles.resolve({"profile": "local", **slurm})


def test_every_mail_type_of_slurm_is_accepted():
    r = profiles.resolve({"profile": "local", "mail_type": ",".join(profiles.MAIL_TYPES)})
    assert r.mail_type.split(",") == list(profiles.MAIL_TYPES)


def test_report_section_merges_key_by_key_over_the_profile():
    r = profiles.resolve({"profile": "speed", "report": {"mem": "8G"}})
    assert (r.report.partition, r.report.mem, r.report.cpus, r.report.time_min) == ("ps", "8G", 1, 60)


# ----------------------------------------------------------------------------------------------
# the report job: one at a time, recorded in jobs.json
@pytest.fixture
def fake_sbatch(monkeypatch):
    """sbatch, squeue/sacct and scancel as a dict: job id -> state."""
    jobs: dict[str, str] = {}
    cancelled: list[str] = []

    def sbatch(path):
        job_id = str(100 + len(jobs))
        jobs[job_id] = "PENDING"
        return job_id

    def cancel(ids):
        for i in ids:
            cancelled.append(i)
            jobs[i] = "CANCELLED"

    monkeypatch.setattr(report_job, "sbatch", sbatch)
    monkeypatch.setattr(scheduler, "cancel", cancel)
    monkeypatch.setattr(
        scheduler,
        "slurm_states",
        lambda ids, name=None, since_iso=None: {i: scheduler.JobState(jobs[i], "squeue") for i in ids if i in jobs},
    )
    return jobs, cancelled


def test_a_later_sweep_replaces_the_pending_report_job(smoke_yaml, fake_sbatch):
    jobs, cancelled = fake_sbatch
    sweep = load_sweep(smoke_yaml)
    r = profiles.resolve({"profile": "local"})
    records = {"resnet18-sgd-random-t0": {"job_id": "7_0", "cluster": "slurm", "submissions": 1}}
    sweep.sweep_dir.mkdir(parents=True)
    ledger.write(sweep.sweep_dir, records)
    first = report_job.ensure(sweep, r, str(smoke_yaml), [], ["7"], True, note=lambda s: None)
    assert first["depends_on"] == ["7"] and jobs[first["job_id"]] == "PENDING"
    # nothing new submitted: the live report job is kept
    assert report_job.ensure(sweep, r, str(smoke_yaml), [], ["7"], False, note=lambda s: None) == first
    # a new array: the pending one is cancelled, one job waits for both
    second = report_job.ensure(sweep, r, str(smoke_yaml), [], ["9", "7"], True, note=lambda s: None)
    assert cancelled == [first["job_id"]] and second["replaced"] == first["job_id"]
    assert [j for j, s in jobs.items() if s == "PENDING"] == [second["job_id"]]
    on_disk = json.loads(ledger.jobs_path(sweep.sweep_dir).read_text())
    assert on_disk[ledger.REPORT_KEY] == second and on_disk["resnet18-sgd-random-t0"] == records["resnet18-sgd-random-t0"]
    # the runs' records are read without it, and a rewrite of them keeps it
    assert ledger.read(sweep.sweep_dir) == records
    ledger.write(sweep.sweep_dir, records)
    assert ledger.read_report(sweep.sweep_dir) == second
    assert "afterany:9:7" in Path(second["script"]).read_text()


def test_report_job_off_submits_nothing(smoke_yaml, fake_sbatch):
    sweep = load_sweep(smoke_yaml)
    r = profiles.resolve({"profile": "local", "report_job": False})
    assert report_job.ensure(sweep, r, str(smoke_yaml), [], ["7"], True, note=lambda s: None) is None
    assert fake_sbatch[0] == {}


def test_status_shows_the_report_job_and_then_the_report(smoke_yaml, fake_sbatch, capsys):
    from slurm.status import main as status_main

    jobs, _ = fake_sbatch
    sweep = load_sweep(smoke_yaml)
    rec = report_job.ensure(sweep, profiles.resolve({"profile": "local"}), str(smoke_yaml), [], ["7"], True, note=print)
    assert status_main([str(smoke_yaml)]) == 0
    assert f"report job {rec['job_id']}: PENDING (afterany:7)" in capsys.readouterr().out
    jobs[rec["job_id"]] = "COMPLETED"
    html = Path(rec["report"])
    html.parent.mkdir(parents=True)
    html.write_text("<html/>")
    assert status_main([str(smoke_yaml)]) == 0
    assert f"report job {rec['job_id']}: COMPLETED (afterany:7); report: {html}" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# the cost line
def _finished_run(sweep, run_id: str, times: list[tuple[float, float, float]]) -> None:
    d = sweep.run_dir(run_id)
    d.mkdir(parents=True)
    rows = [{"cycle": c, "train_time_s": t, "select_time_s": s, "eval_time_s": e} for c, (t, s, e) in enumerate(times, 1)]
    (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "DONE").write_text("x\n")


def test_cost_from_finished_runs_is_the_arithmetic_of_their_times(smoke_yaml, monkeypatch):
    monkeypatch.setattr(scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {})
    sweep = load_sweep(smoke_yaml)  # 12 runs of resnet18 on synthetic, 3 cycles each
    a, b = sweep.runs()[0].run_id, sweep.runs()[1].run_id
    _finished_run(sweep, a, [(10.0, 1.0, 2.0), (20.0, 1.5, 2.5), (30.0, 2.0, 3.0)])
    _finished_run(sweep, b, [(14.0, 1.0, 2.0), (24.0, 0.5, 2.5), (40.0, 2.0, 1.0)])
    per_run = ((13 + 17) + (24 + 27) + (35 + 43)) / 2  # per cycle: mean over the two runs; summed
    r = profiles.resolve({"profile": "speed", "array_parallelism": 4})
    plan = make_plan(sweep, {}, {})
    c = cost.estimate(sweep, [(d.spec, 0) for d in plan.to_submit], r)
    assert len(c.run_seconds) == 10 and all(s == pytest.approx(per_run) for s in c.run_seconds.values())
    assert c.device_hours == pytest.approx(10 * per_run / 3600)  # one GPU per run, one run per task
    assert c.waves == 3 and c.wall_s == pytest.approx(3 * per_run)  # 10 tasks, 4 at once
    line = cost.line(sweep, plan, r)
    assert f"expected {10 * per_run / 3600:.3g} GPU-hours" in line and f"wall about {cost.hms(3 * per_run)}" in line
    assert "from 2 finished runs in this sweep" in line
    # a run resuming at cycle 3 still needs only cycle 3
    assert cost.estimate(sweep, [(sweep.runs()[2], 2)], r).run_seconds[sweep.runs()[2].run_id] == pytest.approx(39.0)


def test_cost_without_times_says_unknown_and_why(smoke_yaml, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {})
    monkeypatch.setattr(cost, "BENCH_DIR", tmp_path / "no-bench")
    assert sweep_main([str(smoke_yaml), "--cluster", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cost: unknown for 12 of 12 runs (resnet18 on synthetic: no finished run in this sweep and no cpu" in out


def test_cost_of_a_local_sweep_counts_waves_of_its_core_slots(smoke_yaml, tmp_path, capsys, monkeypatch):
    sweep = load_sweep(smoke_yaml)
    for i, spec in enumerate(sweep.runs()[:2]):  # finished runs give every run the same time: 17 s
        _finished_run(sweep, spec.run_id, [(4.0, 1.0, 1.0)] * 2 + [(4.0 + i, 0.0, 1.0 - i)])
    monkeypatch.setattr("os.cpu_count", lambda: 4)  # the local backend: 4 runs at once (one core each)
    assert sweep_main([str(smoke_yaml), "--cluster", "local", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "wall about 0:00:51 (3 waves of tasks" in out  # 10 runs to submit, 4 at once: 3 x 17 s, not 1 wave of 64


def test_cost_from_the_newest_bench_result_of_the_device(smoke_yaml, tmp_path):
    sweep = load_sweep(smoke_yaml)
    bench = {"benchmark": "bench_train", "stamp": {"device_type": "cpu", "date": "2026-01-02"}, "config": {"width": 4}}
    bench["models"] = {"resnet18": {"project": {"train": {"img_per_s": 100.0}, "score": {"img_per_s": 1000.0}}}}
    (tmp_path / "new.json").write_text(json.dumps(bench))
    old = {**bench, "stamp": {"device_type": "cpu", "date": "2025-01-01"}, "config": {"width": 8}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    spec = sweep.runs()[0]  # 3 cycles of 4 epochs on 100, 200, 300 labels; pool of 1200 synthetic images
    c = cost.estimate(sweep, [(spec, 0)], profiles.resolve({"profile": "local"}), bench_dir=tmp_path)
    train = 4 * (100 + 200 + 300) / 100.0
    select = ((1200 - 200 + 100) + (1200 - 300 + 100)) / 1000.0
    assert c.run_seconds[spec.run_id] == pytest.approx(train + select)
    assert "new.json" in c.line("CPU")


# ----------------------------------------------------------------------------------------------
# tracking
def test_tracking_without_wandb_is_refused_at_plan_time(smoke_yaml, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), WANDB, "--cluster", "slurm", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: tracking.wandb") and "pip install '.[wandb]'" in err[0]
    assert not load_sweep(smoke_yaml).sweep_dir.exists()


def test_tracking_keys_are_checked_and_leave_fingerprints_alone(smoke_yaml):
    plain, tracked = load_sweep(smoke_yaml), load_sweep(smoke_yaml, [WANDB])
    assert [s.config.fingerprint() for s in plain.runs()] == [s.config.fingerprint() for s in tracked.runs()]
    assert tracked.tracking == {"wandb": {"project": "al-test", "entity": None, "mode": "offline", "group": "smoke"}}
    for bad, key in (("tracking={wandb: {mode: cloud}}", "tracking.wandb.mode"), ("tracking={mlflow: {}}", "tracking")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_sweep(smoke_yaml, [bad])


def test_tags_are_the_grid_point(smoke_yaml):
    spec = load_sweep(smoke_yaml, ["grid.train.width=[4,8]"]).runs()[0]
    assert tracking.tags(spec) == ["resnet18", "sgd", "entropy", "t0", "train.width=4"]


def test_wandb_ids_are_stable_and_valid():
    assert tracking.wandb_id("smoke", "resnet18-sgd-random-t0") == "smoke-resnet18-sgd-random-t0"
    long = tracking.wandb_id("a" * 40, "resnet18-sgd-random-t0-train.width_0.5")
    assert long == tracking.wandb_id("a" * 40, "resnet18-sgd-random-t0-train.width_0.5") and len(long) <= 64
    assert set(long) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def test_a_tracker_that_raises_leaves_the_rows_of_an_untracked_run(smoke_yaml, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import torch

    sweep_plain, sweep_tracked = load_sweep(smoke_yaml, TINY), load_sweep(smoke_yaml, [*TINY, WANDB])
    spec = sweep_plain.runs()[0]
    calls = []

    def broken(self, row, epochs):
        calls.append(row["cycle"])
        raise RuntimeError("the W&B service is gone")

    monkeypatch.setattr(tracking.WandbTracker, "log_cycle", broken)
    messages: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(spec, tmp_path / "plain", log=lambda _: None)
        run(sweep_tracked.run(spec.run_id), tmp_path / "tracked", log=messages.append)
    finally:
        torch.set_num_threads(threads)
    read = lambda d: [comparable(json.loads(x)) for x in (d / "cycles.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(tmp_path / "tracked") == read(tmp_path / "plain") and len(read(tmp_path / "plain")) == 3
    assert calls == [1]  # after the first failure, tracking is off for the run
    assert sum("tracking failed" in m for m in messages) == 1
    assert (tmp_path / "tracked" / "DONE").exists()


def test_a_killed_run_logs_every_cycle_once_to_one_wandb_run(smoke_yaml, tmp_path, python):
    pytest.importorskip("wandb")
    from _wandb import history, run_ids

    overrides = [*TINY, "train.epochs=6", "train.checkpoint_every=1", WANDB]
    sweep = load_sweep(smoke_yaml, overrides)
    spec = sweep.runs()[0]
    run_dir = sweep.run_dir(spec.run_id)
    env = {**os.environ, "WANDB_MODE": "offline", "AL_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [smoke_yaml, *overrides, "--run", spec.run_id]
    p = Run(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # SIGKILL once cycle 1 is logged and cycle 2 has a checkpoint
        deadline = time.monotonic() + 240
        while not (tracking.logged_cycles(run_dir) == {1} and list(run_dir.glob("ckpt-c002-*"))):
            assert time.monotonic() < deadline and p.poll() is None, "the run ended before cycle 2 was under way"
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert not (run_dir / "DONE").exists()
    assert forked_run(args, env, timeout=300).returncode == 0
    wid = tracking.wandb_id(sweep.name, spec.run_id)
    cycles = [r["cycle/cycle"] for r in history(run_dir, wid) if "cycle/cycle" in r]
    assert cycles == [1, 2, 3]
    steps = [r["n_labeled"] for r in history(run_dir, wid) if "cycle/cycle" in r]
    assert steps == [50, 100, 150]
    assert run_ids(run_dir) == {wid}  # every job and cycle continued the same W&B run
    assert tracking.logged_cycles(run_dir) == {1, 2, 3}


def test_sync_uploads_every_offline_run_and_refuses_an_untracked_sweep(smoke_yaml, capsys, monkeypatch):
    pytest.importorskip("wandb")
    from slurm import sync

    sweep = load_sweep(smoke_yaml, [WANDB])
    for run_id in ("a", "b"):
        (sweep.runs_dir / run_id / "wandb" / f"offline-run-20260101_000000-smoke-{run_id}").mkdir(parents=True)
    called = []
    monkeypatch.setattr(sync.subprocess, "run", lambda cmd: called.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert sync.main([str(smoke_yaml), WANDB]) == 0
    assert called[0][1:5] == ["-m", "wandb", "sync", "--yes"] and [Path(p).parent.parent.name for p in called[0][5:]] == [
        "a",
        "b",
    ]
    with pytest.raises(SystemExit) as e:
        sync.main([str(smoke_yaml)])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: tracking:")


def test_cost_splits_by_gpu_model_and_never_averages_two(smoke_yaml, monkeypatch):
    """Finished runs timed on two GPU models: the estimate takes the slower model's times, and the
    line gives each model's GPU-hours; no cycle time is a mean over two models."""
    monkeypatch.setattr(scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {})
    sweep = load_sweep(smoke_yaml)
    runs = [s.run_id for s in sweep.runs()]
    for run_id, device, t in ((runs[0], "Tesla P6", 30.0), (runs[1], "Tesla V100-SXM2-32GB", 10.0)):
        d = sweep.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        rows = [{"cycle": c, "train_time_s": t, "select_time_s": 0.0, "eval_time_s": 0.0, "device": device} for c in (1, 2, 3)]
        (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "DONE").write_text("x\n")
    r = profiles.resolve({"profile": "speed", "array_parallelism": 4})
    plan = make_plan(sweep, {}, {})
    c = cost.estimate(sweep, [(d.spec, 0) for d in plan.to_submit], r)
    assert all(s == pytest.approx(90.0) for s in c.run_seconds.values())  # the P6's 3 x 30 s, not a mean of 60
    line = cost.line(sweep, plan, r)
    assert "on 2 GPU models, the slowest's times" in line
    assert f"Tesla P6 {10 * 90 / 3600:.3g}, Tesla V100-SXM2-32GB {10 * 30 / 3600:.3g}" in line


def test_cost_counts_the_tuning_fits_of_the_cycles_that_tune(smoke_yaml, tmp_path):
    # From bench throughput: cycle 1 tunes 2 configurations on 2 folds, each fit 4 epochs on half of
    # its 100 labels; from finished runs: their rows' tune_time_s.
    tune = "tune={cycles: [1], folds: 2, grid: {sgd: {lr: [0.01, 0.02]}}}"
    sweep = load_sweep(smoke_yaml, ["grid.optimizer=[sgd]", tune])
    bench = {"benchmark": "bench_train", "stamp": {"device_type": "cpu", "date": "2026-01-02"}, "config": {"width": 4}}
    bench["models"] = {"resnet18": {"project": {"train": {"img_per_s": 100.0}, "score": {"img_per_s": 1000.0}}}}
    (tmp_path / "new.json").write_text(json.dumps(bench))
    spec = sweep.runs()[0]
    c = cost.estimate(sweep, [(spec, 0)], profiles.resolve({"profile": "local"}), bench_dir=tmp_path)
    train = 4 * (100 + 200 + 300) / 100.0
    select = ((1200 - 200 + 100) + (1200 - 300 + 100)) / 1000.0
    fits = 2 * 2 * 4 * 50 / 100.0
    assert c.run_seconds[spec.run_id] == pytest.approx(train + select + fits)
    assert cost.estimate(sweep, [(spec, 1)], profiles.resolve({"profile": "local"}), bench_dir=tmp_path).run_seconds[
        spec.run_id
    ] == pytest.approx(train + select - 4 * 100 / 100.0)  # resuming after cycle 1: no fits left
    d = sweep.run_dir(sweep.runs()[1].run_id)
    d.mkdir(parents=True)
    rows = [{"cycle": 1, "train_time_s": 5.0, "select_time_s": 0.0, "eval_time_s": 1.0, "tune_time_s": 20.0}]
    rows += [{"cycle": c, "train_time_s": 5.0, "select_time_s": 1.0, "eval_time_s": 1.0} for c in (2, 3)]
    (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "DONE").write_text("x\n")
    assert cost.estimate(sweep, [(spec, 0)], profiles.resolve({"profile": "local"})).run_seconds[spec.run_id] == pytest.approx(
        40.0
    )
