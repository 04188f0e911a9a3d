"""A lost or damaged jobs.json: rebuilt from what the scheduler still holds, matched to runs through
the submission records (JSON; submitit's pickles are never opened), so a re-sweep never submits a run that is queued or running (no cluster needed:
the scheduler's answer is given; tests/test_slurm_faults.py does it on the real cluster)."""

from __future__ import annotations

import json

import pytest

from al_core.config import load_sweep
from slurm import ledger, scheduler, submit
from slurm.scheduler import JobState
from slurm.sweep import main as sweep_main

SMALL = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0,1]", "train.epochs=2"]


def submitted(sweep, job_id: str, run_ids: list[str], folder: str = "logs/20261201-000000-1") -> None:
    """What a submission leaves for a job: its runs in <folder>/submitted.json (added to the
    folder's earlier jobs, as one array's record holds all of its jobs)."""
    path = sweep.sweep_dir / folder / ledger.SUBMITTED_FILE
    earlier = json.loads(path.read_text())["jobs"] if path.exists() else {}
    runs = [(r, j, f"{j}.out", f"{j}.err") for j, rs in earlier.items() for r in rs]
    ledger.record_array(path.parent, runs + [(r, job_id, f"{job_id}.out", f"{job_id}.err") for r in run_ids])


@pytest.fixture
def sweep(smoke_yaml):
    return load_sweep(smoke_yaml, SMALL)


def held_by_scheduler(monkeypatch, states: dict[str, str]):
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: {j: JobState(s, "squeue") for j, s in states.items()})
    monkeypatch.setattr(
        scheduler,
        "slurm_states",
        lambda ids, name=None, since_iso=None: {j: JobState(states[j], "squeue") for j in ids if j in states},
    )


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbage", "not an object"])
def test_lost_ledger_is_rebuilt_from_the_jobs_the_scheduler_holds(sweep, monkeypatch, damage):
    ids = [s.run_id for s in sweep.runs()]
    submitted(sweep, "51_0", [ids[0]])
    submitted(sweep, "51_1", [ids[1], ids[2]])  # a packed task: two runs
    submitted(sweep, "51_2", [ids[3]])  # its job has left the queue
    full = {r: {"job_id": j, "cluster": "slurm", "submissions": 1} for r, j in zip(ids, ["51_0", "51_1", "51_1", "51_2"])}
    ledger.write(sweep.sweep_dir, full)
    path = ledger.jobs_path(sweep.sweep_dir)
    original = path.read_text()
    {
        "deleted": lambda: path.unlink(),
        "truncated": lambda: path.write_text(original[: len(original) // 2]),
        "garbage": lambda: path.write_bytes(b"\x00\xff" * 10),
        "not an object": lambda: path.write_text("[1, 2]"),
    }[damage]()
    held_by_scheduler(monkeypatch, {"51_0": "RUNNING", "51_1": "PENDING"})
    notes = []
    records = ledger.recover(sweep.sweep_dir, submit.job_name(sweep), note=notes.append)
    assert {r: rec["job_id"] for r, rec in records.items()} == {ids[0]: "51_0", ids[1]: "51_1", ids[2]: "51_1"}
    assert all(rec["cluster"] == "slurm" and rec["rebuilt"] for rec in records.values())
    assert len(notes) == 1 and "rebuilt 3 record(s)" in notes[0]
    assert ledger.read(sweep.sweep_dir) == records  # saved atomically
    aside = list(sweep.sweep_dir.glob("jobs.json.damaged-*"))
    assert len(aside) == (0 if damage == "deleted" else 1)
    if aside:  # the damaged file is kept, byte for byte, for a person to look at
        assert (
            aside[0].read_bytes()
            == {"truncated": original[: len(original) // 2].encode(), "garbage": b"\x00\xff" * 10, "not an object": b"[1, 2]"}[
                damage
            ]
        )


def test_a_re_sweep_after_the_loss_submits_only_what_the_scheduler_does_not_hold(sweep, smoke_yaml, monkeypatch, capsys):
    ids = [s.run_id for s in sweep.runs()]
    submitted(sweep, "60_0", [ids[0]])
    submitted(sweep, "60_1", [ids[1]])
    held_by_scheduler(monkeypatch, {"60_0": "RUNNING", "60_1": "PENDING"})
    monkeypatch.setattr(scheduler, "max_array_size", lambda: 1001)
    assert not ledger.jobs_path(sweep.sweep_dir).exists()
    assert sweep_main([str(smoke_yaml), *SMALL, "--cluster", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "rebuilt 2 record(s)" in out.err and "run `make sweep` to save them" in out.err
    assert "job 60_0 RUNNING" in out.out and "job 60_1 PENDING" in out.out
    assert out.out.count("  submit  ") == 2 and "2 to submit, 2 skipped (0 DONE, 2 queued or running)" in out.out
    assert not ledger.jobs_path(sweep.sweep_dir).exists()  # a dry run writes nothing


def test_a_held_job_whose_runs_cannot_be_told_refuses_the_sweep(sweep, smoke_yaml, monkeypatch, capsys):
    ids = [s.run_id for s in sweep.runs()]
    submitted(sweep, "70_0", [ids[0]])
    (sweep.sweep_dir / "logs" / "20261201-000000-2").mkdir()
    (sweep.sweep_dir / "logs" / "20261201-000000-2" / ledger.SUBMITTED_FILE).write_text('{"jobs": {"70_1": ')  # cut short
    held_by_scheduler(monkeypatch, {"70_0": "RUNNING", "70_1": "PENDING"})
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), *SMALL, "--cluster", "slurm", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code != 0 and len(err) == 1 and err[0].startswith("error: ")
    assert "job 70_1" in err[0] and "unreadable record" in err[0] and "scancel 70" in err[0]


def test_a_sweep_never_submitted_has_nothing_to_rebuild(sweep, monkeypatch):
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: pytest.fail("no scheduler question without submissions"))
    assert ledger.recover(sweep.sweep_dir, "al-smoke") == {}


def test_an_intact_ledger_is_read_as_it_is(sweep, monkeypatch):
    sweep.sweep_dir.mkdir(parents=True)
    ledger.write(sweep.sweep_dir, {"r": {"job_id": "5_0", "cluster": "slurm"}})
    submitted(sweep, "5_0", [sweep.runs()[0].run_id])
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: pytest.fail("an intact ledger is trusted"))
    assert ledger.recover(sweep.sweep_dir, "al-smoke") == {"r": {"job_id": "5_0", "cluster": "slurm"}}
    assert json.loads(ledger.jobs_path(sweep.sweep_dir).read_text())["r"]["job_id"] == "5_0"
