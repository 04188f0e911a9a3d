"""A cluster's bad days, caused on the real SLURM cluster: a ledger lost or cut short while jobs are
queued and running. Nothing may be lost or run twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import load_sweep
from _cluster import epochs_for, sweep_file
from slurm import ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
TWO = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0]", "slurm.profile=local"]


def sweep(path: Path, overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm", *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_lost_then_a_truncated_ledger_never_submits_a_held_run_twice(tmp_path):
    path = sweep_file(tmp_path)
    over = [*TWO, f"train.epochs={epochs_for(40, TWO)}"]  # both still queued or running below
    s = load_sweep(path, over)
    ids = [r.run_id for r in s.runs()]
    try:
        first = sweep(path, over)
        assert first.returncode == 0, first.stdout + first.stderr
        records = ledger.read(s.sweep_dir)
        jobs = {r: records[r]["job_id"] for r in ids}
        jpath = ledger.jobs_path(s.sweep_dir)

        jpath.unlink()  # lost
        status = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *over], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert status.returncode == 0 and "rebuilt 2 record(s)" in status.stderr, status.stdout + status.stderr
        assert all(jobs[r] in status.stdout for r in ids), status.stdout
        assert not jpath.exists()  # status reports; it does not write
        again = sweep(path, over)
        assert again.returncode == 0 and "0 to submit, 2 skipped (0 DONE, 2 queued or running)" in again.stdout, again.stdout
        assert {r: rec["job_id"] for r, rec in ledger.read(s.sweep_dir).items()} == jobs  # rebuilt and saved

        jpath.write_text(jpath.read_text()[:40])  # cut short, as by a full disk
        third = sweep(path, over)
        assert third.returncode == 0 and "0 to submit" in third.stdout and "rebuilt 2 record(s)" in third.stderr, third.stderr
        assert len(list(s.sweep_dir.glob("jobs.json.damaged-*"))) == 1

        done = sweep(path, over, "--wait")
        assert done.returncode == 0 and "all runs DONE" in done.stdout, done.stdout + done.stderr
        for r in ids:  # one job each, never restarted or resubmitted
            assert json.loads((s.run_dir(r) / "run.json").read_text())["restarts"] == 0
            out = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-o", "JobID", "-j", jobs[r].split("_")[0]], capture_output=True, text=True
            )
            assert jobs[r] in out.stdout.split()
        assert len({rec["job_id"] for rec in ledger.read(s.sweep_dir).values()}) == 2
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])
