"""slurm.runs_per_task on the real SLURM cluster: K = 2 runs share one array task.

4 runs go out as 2 tasks and finish with the rows of runs made one at a time at the same thread
count; `scontrol requeue` of a shared task resumes both runs to identical rows; a failing run does
not stop its neighbour, and the re-sweep resubmits only the failed run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from al_core.config import load_sweep
from al_core.loop import run
from al_core.results import comparable
from _cluster import epochs_for, rows, sweep_file, wait_until
from slurm import ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
PACK = ["slurm.profile=local", "slurm.runs_per_task=2", "slurm.cpus=2"]
FOUR = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0,1]", "train.epochs=2", *PACK]


def sweep(path: Path, overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_at_a_time(path: Path, overrides: list[str], run_id: str, out: Path) -> list[dict]:
    sweep_ = load_sweep(path, [*overrides, f"output={out}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each packed run had cpus / K = 1 thread
    try:
        run(sweep_.run(run_id), sweep_.run_dir(run_id), log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return rows(sweep_.run_dir(run_id))


def test_two_runs_per_task_finish_with_the_rows_of_single_runs(tmp_path):
    path = sweep_file(tmp_path)
    s = load_sweep(path, FOUR)
    ids = [r.run_id for r in s.runs()]
    try:
        p = sweep(path, FOUR)
        assert p.returncode == 0, p.stdout + p.stderr
        records = ledger.read(s.sweep_dir)
        jobs = {records[r]["job_id"] for r in ids}
        assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs}) == 1, records  # 2 tasks of one array
        for r in ids:
            assert len(records[r]["shares_task_with"]) == 1
        wait_until(lambda: all((s.run_dir(r) / "DONE").exists() for r in ids), 400, "every run DONE", poll=2)
        status = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *FOUR], cwd=ROOT, capture_output=True, text=True
        )
        assert "4 DONE" in status.stdout and "+1" in status.stdout, status.stdout
        for r in ids[:2]:
            single = one_at_a_time(path, FOUR, r, tmp_path / "single")
            assert [comparable(x) for x in rows(s.run_dir(r))] == [comparable(x) for x in single], r
        again = sweep(path, FOUR)
        assert "0 to submit, 4 skipped (4 DONE" in again.stdout, again.stdout
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])


def test_a_failing_run_does_not_stop_its_neighbour_and_only_it_is_resubmitted(tmp_path):
    path = sweep_file(tmp_path)
    over = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0,1]", "train.epochs=2", *PACK]
    s = load_sweep(path, over)
    bad, good = [r.run_id for r in s.runs()]
    s.run_dir(bad).mkdir(parents=True)
    (s.run_dir(bad) / "cycles.jsonl").write_text(json.dumps({"run_id": "someone-else", "cycle": 1}) + "\n")
    try:
        p = sweep(path, over)
        assert p.returncode == 0, p.stdout + p.stderr
        job = ledger.read(s.sweep_dir)[good]["job_id"]
        assert ledger.read(s.sweep_dir)[bad]["job_id"] == job
        wait_until(lambda: (st := scheduler.slurm_states([job]).get(job)) and not st.active, 400, "the task to end", poll=2)
        assert (s.run_dir(good) / "DONE").exists() and not (s.run_dir(bad) / "DONE").exists()
        assert scheduler.slurm_states([job])[job].state == "FAILED"
        err = Path(ledger.read(s.sweep_dir)[bad]["log_err"]).read_text()
        assert "row 1 is not cycle 1" in err
        (s.run_dir(bad) / "cycles.jsonl").unlink()
        again = sweep(path, over)
        assert "1 to submit" in again.stdout and good in again.stdout, again.stdout
        records = ledger.read(s.sweep_dir)
        assert records[good]["job_id"] == job and records[bad]["job_id"] != job
        wait_until(lambda: (s.run_dir(bad) / "DONE").exists(), 300, "the resubmitted run DONE", poll=2)
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])


def test_scontrol_requeue_of_a_shared_task_resumes_both_runs(tmp_path):
    path = sweep_file(tmp_path)
    two = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0]", *PACK]
    over = [*two, f"train.epochs={epochs_for(20, two)}"]  # both still training when the task is requeued
    s = load_sweep(path, over)
    ids = [r.run_id for r in s.runs()]
    try:
        p = sweep(path, over)
        assert p.returncode == 0, p.stdout + p.stderr
        job = ledger.read(s.sweep_dir)[ids[0]]["job_id"]
        wait_until(lambda: all(any((s.run_dir(r)).glob("ckpt-*")) for r in ids), 300, "both runs to checkpoint", poll=0.5)
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=30)
        wait_until(lambda: all((s.run_dir(r) / "DONE").exists() for r in ids), 600, "both runs DONE after the requeue", poll=2)
        for r in ids:
            restarts = json.loads((s.run_dir(r) / "run.json").read_text())["restarts"]
            assert restarts >= 1, r
            single = one_at_a_time(path, over, r, tmp_path / "single")
            assert [comparable(x) for x in rows(s.run_dir(r))] == [comparable(x) for x in single], r
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])
