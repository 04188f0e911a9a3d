"""A run directory's lock left by a job on a node that died (the shared file system keeps it) is
taken over, and logged; one held by a live job, or one the scheduler cannot be asked about, is not."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from al_core.rundir import LOCK_NAME, RunDirLock, RunLocked, holder
from slurm import job, scheduler
from slurm.scheduler import JobState

HOLD = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, (json.dumps({"host": sys.argv[2], "pid": 4242, "job": sys.argv[3], "since": "2026-12-01T00:00:00+00:00"}) + "\\n").encode(), 0)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def held_by(tmp_path):
    """A lock of tmp_path held by a process that says it is job JOB on host HOST (a dead node's lock)."""
    procs = []

    def start(host: str, job_id: str):
        p = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(tmp_path / LOCK_NAME), host, job_id], stdout=subprocess.PIPE, text=True
        )
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def states(monkeypatch, answer):
    def fake(ids, name=None, since_iso=None):
        if isinstance(answer, Exception):
            raise answer
        return {i: JobState(answer[i], "sacct") for i in ids if i in answer}

    monkeypatch.setattr(scheduler, "slurm_states", fake)


@pytest.mark.parametrize("answer", [{"900_1": "NODE_FAIL"}, {"900_1": "CANCELLED"}, {}])
def test_a_dead_jobs_lock_on_another_host_is_taken_over(tmp_path, held_by, monkeypatch, answer):
    held_by("deadnode", "900_1")
    states(monkeypatch, answer)
    node(monkeypatch, "NodeName=deadnode State=DOWN* BootTime=2026-11-30T00:00:00")  # asked only when the job is unknown
    notes = []
    assert job.take_over_stale_lock(tmp_path, notes.append)
    assert len(notes) == 1 and "held by job 900_1 on deadnode" in notes[0] and (answer.get("900_1") or "DOWN*") in notes[0]
    aside = list(tmp_path.glob(f"{LOCK_NAME}.stale-*"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["host"] == "deadnode"  # kept for a person
    RunDirLock(tmp_path).acquire().release()  # the run directory is free again


def test_a_live_jobs_lock_is_left_alone(tmp_path, held_by, monkeypatch):
    held_by("othernode", "901_0")
    states(monkeypatch, {"901_0": "RUNNING"})
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)
    with pytest.raises(RunLocked, match="othernode"):
        RunDirLock(tmp_path).acquire()


@pytest.mark.parametrize("answer", ["NodeName=othernode State=MIXED BootTime=2026-11-30T00:00:00", None])
def test_a_job_the_scheduler_does_not_know_is_not_gone_without_word_of_its_node(tmp_path, held_by, monkeypatch, answer):
    """A job id this scheduler has never seen (another cluster on the same file system, say) on a
    node that is up, or that this scheduler does not know either: the lock stays."""
    held_by("othernode", "907_0")
    states(monkeypatch, {})
    node(monkeypatch, answer)
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)
    assert holder(tmp_path)["job"] == "907_0"


def test_without_the_scheduler_nothing_is_taken_over(tmp_path, held_by, monkeypatch):
    held_by("othernode", "902_0")
    states(monkeypatch, scheduler.SchedulerError("squeue failed"))
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)
    assert holder(tmp_path)["job"] == "902_0"


def node(monkeypatch, answer):
    """What `scontrol show node -o` answers (None: it fails)."""
    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: answer if cmd[:3] == ["scontrol", "show", "node"] else None)


@pytest.mark.parametrize(
    "answer, evidence",
    [
        ("NodeName=deadnode State=DOWN* BootTime=2026-11-30T00:00:00", "is DOWN*"),
        ("NodeName=deadnode State=IDLE+NOT_RESPONDING BootTime=2026-11-30T00:00:00", "NOT_RESPONDING"),
        ("NodeName=deadnode State=IDLE BootTime=2026-12-01T06:00:00", "booted at 2026-12-01T06:00:00"),
    ],
)
def test_this_jobs_own_start_on_a_dead_node_is_taken_over(tmp_path, held_by, monkeypatch, answer, evidence):
    held_by("deadnode", "903_4")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "903")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    states(monkeypatch, {"903_4": "RUNNING"})  # it is us: requeued off the dead node
    node(monkeypatch, answer)
    notes = []
    assert job.take_over_stale_lock(tmp_path, notes.append)
    assert "previous start" in notes[0] and evidence in notes[0]


@pytest.mark.parametrize("answer", ["NodeName=deadnode State=ALLOCATED BootTime=2026-11-30T00:00:00", None])
def test_this_jobs_own_start_is_not_taken_over_without_evidence_that_it_is_gone(tmp_path, held_by, monkeypatch, answer):
    """Requeued, but the old node is up and has not rebooted since the lock was taken (its copy of
    the job may still be writing), or the scheduler cannot say: the lock stays, the run exits 75."""
    held_by("deadnode", "906_1")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "906")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    states(monkeypatch, {"906_1": "RUNNING"})
    node(monkeypatch, answer)
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)
    assert holder(tmp_path)["job"] == "906_1" and not list(tmp_path.glob(f"{LOCK_NAME}.stale-*"))


def test_a_holder_on_this_host_or_a_free_lock_is_not_touched(tmp_path, held_by, monkeypatch):
    import socket

    states(monkeypatch, {})
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)  # no lock file at all
    p = held_by(socket.gethostname(), "904_0")
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)  # the kernel frees a dead local holder's lock
    p.kill()
    p.wait()
    time.sleep(0.1)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "deadnode", "job": "905_0"}))
    assert not job.take_over_stale_lock(tmp_path, pytest.fail)  # written but not held: nothing to take over
    assert not list(Path(tmp_path).glob(f"{LOCK_NAME}.stale-*"))
