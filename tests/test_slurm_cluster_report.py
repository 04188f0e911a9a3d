"""The report job on a real SLURM cluster (.ci/slurm-cluster.sh up): the report appears with no
report command typed, after every array (afterany); a second `make sweep` leaves one pending
report job; a cancelled run's task still yields a report that flags it.

Tiny runs (jobs/smoke.yaml, `slurm.profile=local`); marked `slurm`: skipped without sbatch, and
when the controller does not answer unless REQUIRE_SLURM=1.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import load_sweep
from _cluster import sweep_file, wait_until
from slurm import ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
BASE = ["slurm.profile=local", "grid.optimizer=[sgd]", "grid.strategy=[random]", "al.initial_size=50", "al.query_size=50"]


@pytest.fixture
def cleanup():
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        ids = [rec["job_id"] for rec in ledger.read(d).values()]
        report = ledger.read_report(d)
        scheduler.cancel(ids + ([report["job_id"]] if report else []))


def sweep(path: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def sacct(job_id: str, fields: str = "JobID,State,Start,End") -> list[list[str]]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", fields, "-j", job_id], capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def dependency(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return re.search(r"Dependency=(\S+)", out).group(1)


def pending_report_jobs(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-t", "PD", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def test_report_job_after_every_array_and_one_at_a_time(tmp_path, cleanup):
    path = sweep_file(tmp_path)
    first, both = [*BASE, "grid.trial=[0]", "train.epochs=12"], [*BASE, "grid.trial=[0,1]", "train.epochs=12"]
    s = load_sweep(path, both)
    cleanup.append(s.sweep_dir)
    sweep(path, first)
    r1 = ledger.read_report(s.sweep_dir)
    array1 = ledger.read(s.sweep_dir)["resnet18-sgd-random-t0"]["job_id"].split("_")[0]
    assert r1["depends_on"] == [array1] and dependency(r1["job_id"]).startswith(f"afterany:{array1}")
    # a second `make sweep` with one more run: a second array, and the pending report job replaced
    p = sweep(path, both)
    r2 = ledger.read_report(s.sweep_dir)
    array2 = ledger.read(s.sweep_dir)["resnet18-sgd-random-t1"]["job_id"].split("_")[0]
    assert r2["replaced"] == r1["job_id"] and sorted(r2["depends_on"]) == sorted([array1, array2]), p.stdout
    assert pending_report_jobs(f"al-{s.name}-report") == [r2["job_id"]]
    print(f"scontrol: report job {r2['job_id']} Dependency={dependency(r2['job_id'])}")
    html = s.sweep_dir / "report" / "report.html"
    wait_until(lambda: sacct(r2["job_id"], "State") == [["COMPLETED"]], 300, "the report job to complete", poll=2)
    assert html.exists() and all((s.run_dir(r) / "DONE").exists() for r in ("resnet18-sgd-random-t0", "resnet18-sgd-random-t1"))
    ends = [row[3] for a in (array1, array2) for row in sacct(a)]
    start = sacct(r2["job_id"])[0][2]
    assert start >= max(ends), (start, ends)  # ISO timestamps: the report started after the last run ended
    for job in (array1, array2, r2["job_id"]):
        print("sacct:", sacct(job, "JobID,JobName,State,Start,End"))
    assert sacct(r1["job_id"], "State")[0][0].startswith("CANCELLED")  # "CANCELLED by <uid>"


def test_cancelled_run_still_yields_a_report_that_flags_it(tmp_path, cleanup):
    path = sweep_file(tmp_path)
    overrides = [*BASE, "grid.trial=[0,1]", "train.epochs=40"]
    s = load_sweep(path, overrides)
    cleanup.append(s.sweep_dir)
    sweep(path, overrides)
    victim = ledger.read(s.sweep_dir)["resnet18-sgd-random-t1"]["job_id"]
    report = ledger.read_report(s.sweep_dir)
    scheduler.cancel([victim])
    wait_until(lambda: sacct(report["job_id"], "State") == [["COMPLETED"]], 400, "the report job to complete", poll=2)
    assert not (s.run_dir("resnet18-sgd-random-t1") / "DONE").exists()
    with open(s.sweep_dir / "report" / "runs.csv") as f:
        runs = {row["run_id"]: row for row in csv.DictReader(f)}
    assert runs["resnet18-sgd-random-t1"]["done"] in ("False", "false", "0")
    assert "Runs not finished" in (s.sweep_dir / "report" / "report.md").read_text()
    print("sacct:", sacct(victim.split("_")[0], "JobID,State"), sacct(report["job_id"], "JobID,JobName,State"))
