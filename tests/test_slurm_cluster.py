"""slurm/ on a real SLURM cluster (.ci/slurm-cluster.sh up): one array, idempotent and concurrent
submission, resubmission of a cancelled run, requeue by `scontrol requeue` and by the time limit.

Smoke-sized runs with `slurm.profile=local`; outputs under tmp dirs. Marked `slurm`: skipped without
sbatch (conftest), and skipped when the controller does not answer unless REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_core.config import load_sweep
from al_core.loop import run
from al_core.results import comparable
from _cluster import epochs_for, rows, sweep_file, wait_until
from slurm import ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ["slurm.profile=local"]
SMALL = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0,1]", "train.epochs=2", *LOCAL]
ONE = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "al.initial_size=300", "al.query_size=300", *LOCAL]


@pytest.fixture(scope="module")
def sweeps_to_clean():
    """Sweep dirs whose jobs are cancelled at the end, whatever the tests' outcome."""
    dirs: list[Path] = []
    yield dirs
    ids = [rec["job_id"] for d in dirs for rec in ledger.read(d).values()]
    scheduler.cancel(ids)


def sweep(path: Path, overrides: list[str], *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm", *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def state_of(job_id: str) -> str:
    return scheduler.slurm_states([job_id]).get(job_id, scheduler.UNKNOWN).state


def result_of(record: dict):
    """What submitit recorded as the job's result (the pickle next to its log)."""
    path = Path(record["log_out"]).with_name(Path(record["log_out"]).name.replace("_log.out", "_result.pkl"))
    with open(path, "rb") as f:
        return pickle.load(f)


def interruptions_resumed_in_place(log: str) -> list[tuple]:
    """Every 'interrupted at' position of the log, checked against the 'resumed at' that follows it."""
    stops = re.findall(r"interrupted by (SIG\w+) at cycle (\d+) (?:epoch (\d+) step (\d+)|after epoch (\d+))", log)
    resumes = re.findall(r"resumed at cycle (\d+), epoch (\d+), step (\d+)", log)
    assert len(resumes) >= len(stops) > 0, log
    for (sig, c, e, s, after), (rc, re_, rs) in zip(stops, resumes):
        where = (c, str(int(e) - 1), s) if e else (c, after, "0")  # 'epoch e' counts from 1; 'resumed' counts epochs done
        assert (rc, re_, rs) == where, (sig, c, e, s, after, rc, re_, rs)
    return stops


# ----------------------------------------------------------------------------------------------
# one array, every run DONE, the same rows as a local execution
@pytest.fixture(scope="module")
def array_sweep(tmp_path_factory, sweeps_to_clean):
    path = sweep_file(tmp_path_factory.mktemp("array"))
    sweeps_to_clean.append(load_sweep(path, SMALL).sweep_dir)
    t0 = time.monotonic()
    p = sweep(path, SMALL, "--wait")
    return path, p, time.monotonic() - t0


def test_array_of_four_runs_is_one_job_array_and_every_run_is_done(array_sweep):
    path, p, elapsed = array_sweep
    assert p.returncode == 0, p.stdout + p.stderr
    s = load_sweep(path, SMALL)
    records = ledger.read(s.sweep_dir)
    bases = {rec["job_id"].split("_")[0] for rec in records.values()}
    assert len(records) == 4 and len(bases) == 1, records
    base = bases.pop()
    assert sorted(rec["job_id"] for rec in records.values()) == [f"{base}_{i}" for i in range(4)]
    assert f"submitted 4 runs as job array {base} ({base}_0 .. {base}_3)" in p.stdout

    def accounted():  # `--wait` returns once every DONE exists; the jobs end (and slurmdbd hears of it) just after
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", base], capture_output=True, text=True)
        return sorted(out.stdout.split()) == sorted(f"{base}_{i}|COMPLETED" for i in range(4))

    wait_until(accounted, 60, f"sacct to show the 4 tasks of array {base} COMPLETED")
    for spec in s.runs():
        assert (s.run_dir(spec.run_id) / "DONE").exists()
        assert result_of(records[spec.run_id]) == ("success", "done")
        log = (s.sweep_dir / "logs" / "runs" / f"{spec.run_id}.out").read_text()
        assert "\r" not in log and "cycle 3/3 | labelled 300" in log and "img/s" in log and "ETA" in log
    assert "4/4 runs done" in p.stdout and "all runs DONE" in p.stdout
    print(f"4-run array submitted and finished in {elapsed:.1f}s")


def test_slurm_rows_equal_those_of_a_local_execution(array_sweep, tmp_path):
    import torch

    path, p, _ = array_sweep
    s = load_sweep(path, SMALL)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the jobs (AL_THREADS=1, conftest.ROW_THREADS)
    try:
        for spec in s.runs():
            run(spec, tmp_path / spec.run_id, log=lambda _: None)
            here = [comparable(r) for r in rows(tmp_path / spec.run_id)]
            there = [comparable(r) for r in rows(s.run_dir(spec.run_id))]
            assert len(there) == 3 and here == there, spec.run_id
    finally:
        torch.set_num_threads(threads)


def test_sweep_again_after_done_submits_nothing(array_sweep):
    path, _, _ = array_sweep
    s = load_sweep(path, SMALL)
    before = ledger.jobs_path(s.sweep_dir).read_text()
    p = sweep(path, SMALL)
    assert p.returncode == 0 and "0 to submit, 4 skipped (4 DONE" in p.stdout and "nothing to submit" in p.stdout, p.stdout
    assert ledger.jobs_path(s.sweep_dir).read_text() == before


# ----------------------------------------------------------------------------------------------
# idempotence: twice in a row, and two at once
def test_two_at_once_submit_each_run_once_and_again_submits_nothing(tmp_path, sweeps_to_clean):
    path = sweep_file(tmp_path)
    overrides = [*SMALL, f"train.epochs={epochs_for(60, SMALL)}"]  # a minute each: still queued or running below
    s = load_sweep(path, overrides)
    sweeps_to_clean.append(s.sweep_dir)
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(("submitted 4 runs" in o, "nothing to submit" in o) for o in outs) == [(False, True), (True, False)], outs
    records = ledger.read(s.sweep_dir)
    assert sorted(records) == sorted(sp.run_id for sp in s.runs())
    assert all(rec["submissions"] == 1 for rec in records.values())
    job_ids = [rec["job_id"] for rec in records.values()]
    assert len(set(job_ids)) == 4 and len({j.split("_")[0] for j in job_ids}) == 1
    # right away, with the jobs queued or running: nothing to submit
    again = sweep(path, overrides)
    assert again.returncode == 0 and "0 to submit, 4 skipped (0 DONE, 4 queued or running)" in again.stdout, again.stdout
    assert re.search(r"skip +resnet18-sgd-random-t0 +job \d+_0 (PENDING|RUNNING)", again.stdout), again.stdout
    assert ledger.read(s.sweep_dir) == records
    scheduler.cancel(job_ids)


# ----------------------------------------------------------------------------------------------
# a cancelled run: `make sweep` again resubmits only that run
def test_cancelled_run_is_resubmitted_alone(tmp_path, sweeps_to_clean):
    path = sweep_file(tmp_path)
    two = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0,1]", *LOCAL]
    overrides = [*two, f"train.epochs={epochs_for(20, two)}"]  # still running when it is cancelled
    s = load_sweep(path, overrides)
    sweeps_to_clean.append(s.sweep_dir)
    first = sweep(path, overrides)
    assert first.returncode == 0, first.stdout + first.stderr
    records = ledger.read(s.sweep_dir)
    keep, victim = "resnet18-sgd-random-t0", "resnet18-sgd-random-t1"
    victim_job = records[victim]["job_id"]
    # Cancel it while it runs: a pending array task cancelled before it starts leaves no trace in
    # accounting at all (it then reads UNKNOWN, which is resubmitted just the same).
    wait_until(lambda: state_of(victim_job) == "RUNNING", 60, "the run to cancel to start", poll=0.2)
    scheduler.cancel([victim_job])
    wait_until(
        lambda: (s.run_dir(keep) / "DONE").exists() and state_of(victim_job) == "CANCELLED",
        120,
        "the kept run to finish and the cancelled one to read CANCELLED",
    )
    assert not (s.run_dir(victim) / "DONE").exists()
    p = sweep(path, overrides)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(rf"submit +{victim} +job {victim_job} CANCELLED: resubmit \(1 so far\)", p.stdout), p.stdout
    assert re.search(rf"skip +{keep} +DONE", p.stdout) and "1 to submit, 1 skipped" in p.stdout, p.stdout
    after = ledger.read(s.sweep_dir)
    assert after[keep] == records[keep]
    assert after[victim]["submissions"] == 2 and after[victim]["job_ids"][0] == victim_job
    assert after[victim]["job_id"] != victim_job
    # and once more with --wait: nothing new to submit, waits for the resubmitted run
    done = sweep(path, overrides, "--wait")
    assert done.returncode == 0 and "0 to submit, 2 skipped (1 DONE, 1 queued or running)" in done.stdout, done.stdout
    assert (s.run_dir(victim) / "DONE").exists() and "all runs DONE" in done.stdout
    assert ledger.read(s.sweep_dir)[victim]["submissions"] == 2


# ----------------------------------------------------------------------------------------------
# requeue: `scontrol requeue` (SIGTERM) and the time limit (USR2), both submitted at once
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, sweeps_to_clean):
    # A outlives a 1-minute limit (about 100 s of training, at the rate measured here); the limit
    # is checked every 30 s and the warning may come up to a minute early, so USR2 lands mid-run.
    limit = [
        *ONE,
        f"train.epochs={epochs_for(100, ONE)}",
        "train.checkpoint_every=25",
        "slurm.time=1",
        "slurm.signal_delay_s=5",
        "slurm.max_timeouts=8",
    ]
    # B trains about 30 s; it is requeued with `scontrol requeue` once its first cycle (a sixth of
    # its training) is done, so it is still running then.
    requeue = [*ONE, f"train.epochs={epochs_for(30, ONE)}", "train.checkpoint_every=5", "slurm.time=10"]
    path_a, path_b = sweep_file(tmp_path_factory.mktemp("limit")), sweep_file(tmp_path_factory.mktemp("requeue"))
    a, b = load_sweep(path_a, limit), load_sweep(path_b, requeue)
    sweeps_to_clean += [a.sweep_dir, b.sweep_dir]
    t0 = time.monotonic()
    for path, overrides in ((path_a, limit), (path_b, requeue)):
        p = sweep(path, overrides)
        assert p.returncode == 0, p.stdout + p.stderr
    run_id = "resnet18-sgd-random-t0"
    job_b = ledger.read(b.sweep_dir)[run_id]["job_id"]
    wait_until(lambda: len(rows(b.run_dir(run_id))) >= 1, 120, "the first cycle of the run to requeue", poll=0.2)
    assert state_of(job_b) == "RUNNING"
    subprocess.run(["scontrol", "requeue", job_b], check=True, timeout=60)
    return {"limit": (a, t0), "requeue": (b, t0), "run_id": run_id}


def test_scontrol_requeue_resumes_and_finishes(interrupted):
    b, t0 = interrupted["requeue"]
    run_id = interrupted["run_id"]
    wait_until(lambda: (b.run_dir(run_id) / "DONE").exists(), 240, "the requeued run to finish")
    rec = ledger.read(b.sweep_dir)[run_id]
    wait_until(lambda: state_of(rec["job_id"]) == "COMPLETED", 60, "the job to read COMPLETED")
    log = (b.sweep_dir / "logs" / "runs" / f"{run_id}.out").read_text()
    stops = interruptions_resumed_in_place(log)
    assert stops[0][0] == "SIGTERM" and "exiting with 75" in log
    assert rec["submissions"] == 1  # SLURM requeued the same job: nothing was resubmitted
    assert json.loads((b.run_dir(run_id) / "run.json").read_text())["restarts"] == 1
    assert result_of(rec) == ("success", "done")
    assert len(rows(b.run_dir(run_id))) == 3
    print(f"scontrol requeue: done {time.monotonic() - t0:.0f}s after submission")


def test_time_limit_requeues_and_finishes_from_checkpoint(interrupted):
    a, t0 = interrupted["limit"]
    run_id = interrupted["run_id"]
    wait_until(lambda: (a.run_dir(run_id) / "DONE").exists(), 420, "the time-limited run to finish", poll=2)
    rec = ledger.read(a.sweep_dir)[run_id]
    wait_until(lambda: state_of(rec["job_id"]) == "COMPLETED", 60, "the job to read COMPLETED")
    log = (a.sweep_dir / "logs" / "runs" / f"{run_id}.out").read_text()
    stops = interruptions_resumed_in_place(log)
    assert {sig for sig, *_ in stops} == {"SIGUSR2"}
    assert "checkpoint(): requeueing" in log and "Requeued job" in log
    assert rec["submissions"] == 1
    restarts = json.loads((a.run_dir(run_id) / "run.json").read_text())["restarts"]
    assert restarts == len(stops) >= 1
    assert result_of(rec) == ("success", "done")  # a requeued-and-finished job reads as success

    def history():  # accounting may trail the controller by a moment
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "--duplicates", "-o", "State", "-j", rec["job_id"]], capture_output=True, text=True
        ).stdout.split()
        return out if out and out[-1] == "COMPLETED" else None

    states = wait_until(history, 60, "accounting to record the job as COMPLETED")
    assert states.count("REQUEUED") == restarts, states
    print(f"time limit: {restarts} requeue(s), done {time.monotonic() - t0:.0f}s after submission")
