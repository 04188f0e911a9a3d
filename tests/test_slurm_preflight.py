"""On the real SLURM cluster: a job that asks for a GPU the node cannot give exits 78 at once and
is held (status shows its line, a re-sweep does not resubmit it until --retry-failed); a sweep
larger than MaxArraySize goes out as several arrays and finishes, and a re-sweep submits nothing.

CI starts the cluster with AL_SLURM_MAX_ARRAY_SIZE=8 (.ci/run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_core.config import load_sweep
from _cluster import sweep_file, wait_until
from slurm import held, ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]


def cli(module: str, path: Path, overrides: list[str], *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, str(path), *overrides, *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.cpu_host  # the cluster's GPU is fake: the job must find no real one to fall back on
def test_gpu_job_on_a_node_without_a_usable_gpu_exits_78_and_is_held(tmp_path):
    path = sweep_file(tmp_path)
    over = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "slurm.profile=local", "slurm.gpus=1"]
    sweep = load_sweep(path, over)
    run_id = sweep.runs()[0].run_id
    try:
        p = cli("slurm.sweep", path, over, "--cluster", "slurm")
        assert p.returncode == 0, p.stdout + p.stderr
        record = ledger.read(sweep.sweep_dir)[run_id]
        t0 = time.monotonic()
        wait_until(lambda: run_id in held.read(sweep.sweep_dir), 180, "the job's preflight to hold the run")
        state = wait_until(
            lambda: (s := scheduler.slurm_states([record["job_id"]]).get(record["job_id"])) and not s.active and s,
            120,
            "the job to end",
        )
        elapsed = time.monotonic() - t0
        assert state.state == "FAILED"

        def accounted():  # accounting trails the controller: it may still read RUNNING with 0:0 for a moment
            out = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-o", "State,ExitCode", "-j", record["job_id"]], capture_output=True, text=True
            ).stdout.split()
            return out[-1].split("|") if out and out[-1].split("|")[0] not in ("PENDING", "RUNNING", "REQUEUED") else None

        sacct_state, exit_code = wait_until(accounted, 60, "accounting to record the job's end")
        assert sacct_state == "FAILED" and exit_code.startswith("78:"), (sacct_state, exit_code)
        err = Path(record["log_err"]).read_text()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "asked for a GPU" in errors[0] and "node " in errors[0], err
        assert "Traceback" not in err
        assert not sweep.run_dir(run_id).exists(), "no half-written run directory"
        print(f"preflight refusal seen {elapsed:.1f}s after the job was submitted: {errors[0]}")

        status = cli("slurm.status", path, over)
        assert status.returncode == 0 and "HELD" in status.stdout and "exited 78" in status.stdout
        assert "asked for a GPU" in status.stdout and "--retry-failed" in status.stdout

        again = cli("slurm.sweep", path, over, "--cluster", "slurm")
        assert again.returncode == 0 and "0 to submit" in again.stdout and "1 held" in again.stdout, again.stdout
        assert "--retry-failed" in again.stdout and ledger.read(sweep.sweep_dir)[run_id]["job_id"] == record["job_id"]

        retry = cli("slurm.sweep", path, over, "--cluster", "slurm", "--retry-failed")
        assert retry.returncode == 0 and "1 to submit" in retry.stdout, retry.stdout
        assert ledger.read(sweep.sweep_dir)[run_id]["job_id"] != record["job_id"]
        wait_until(lambda: run_id in held.read(sweep.sweep_dir), 180, "the retried job to be held again")
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(sweep.sweep_dir).values()])


def test_a_sweep_larger_than_max_array_size_is_split_and_finishes(tmp_path):
    limit = scheduler.max_array_size()
    if limit >= 20:
        message = f"MaxArraySize is {limit}; start the cluster with AL_SLURM_MAX_ARRAY_SIZE=8 (as .ci/run does)"
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    path = sweep_file(tmp_path)
    over = [
        "grid.optimizer=[sgd]",
        "grid.strategy=[random]",
        "grid.trial=[0,1,2,3,4,5,6,7,8,9]",
        "grid.train.width=[2,4]",
        "al.cycles=2",
        "train.epochs=1",
        "train.checkpoint_every=0",
        "slurm.profile=local",
    ]
    sweep = load_sweep(path, over)
    ids = [s.run_id for s in sweep.runs()]
    assert len(ids) == 20
    try:
        p = cli("slurm.sweep", path, over, "--cluster", "slurm", timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        arrays = -(-20 // limit)
        assert f"exceed the cluster's MaxArraySize of {limit}: submitting {arrays} job arrays" in p.stdout
        assert f"submitted 20 runs as {arrays} job arrays" in p.stdout
        records = ledger.read(sweep.sweep_dir)
        bases = {records[r]["job_id"].split("_")[0] for r in ids}
        assert len(bases) == arrays
        print(f"MaxArraySize {limit}: 20 runs went out as arrays {sorted(bases, key=int)}")
        wait_until(lambda: all((sweep.run_dir(r) / "DONE").exists() for r in ids), 600, "every run DONE", poll=3)
        status = cli("slurm.status", path, over)
        assert "20 DONE" in status.stdout, status.stdout
        again = cli("slurm.sweep", path, over, "--cluster", "slurm")
        assert again.returncode == 0 and "0 to submit, 20 skipped (20 DONE" in again.stdout, again.stdout
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(sweep.sweep_dir).values()])
