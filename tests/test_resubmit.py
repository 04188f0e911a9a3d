"""The report job resubmits runs that ended for a reason not their own (slurm.resubmit), within a bound;
a run that failed by itself is left alone. On the cluster, under CANCEL preemption: test_speed_cluster.py."""

from __future__ import annotations

import pytest

from al_core.config import load_sweep
from slurm import ledger, profiles, report_job
from slurm.plan import make_plan
from slurm.resubmit import NOT_THEIR_OWN, interrupted
from slurm.scheduler import JobState

STATES = ["PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "FAILED", "OUT_OF_MEMORY", "TIMEOUT", "CANCELLED", "COMPLETED", "RUNNING"]


@pytest.mark.parametrize("submissions, bound, expected", [(1, 3, True), (3, 3, True), (4, 3, False), (1, 0, False)])
def test_only_runs_ended_not_by_their_own_fault_are_resubmitted_within_the_bound(smoke_yaml, submissions, bound, expected):
    sweep = load_sweep(smoke_yaml, [])
    runs = [s.run_id for s in sweep.runs()][: len(STATES)]
    records: dict = {}
    for i, run in enumerate(runs):
        ledger.record_submission(records, run, f"9_{i}", "slurm", "/x.out", "/x.err")
        records[run]["submissions"] = submissions
    states = {run: JobState(state, "sacct") for run, state in zip(runs, STATES)}
    plan = make_plan(sweep, records, states)
    chosen = {d.run_id: d.state for d in interrupted(plan, records, bound)}
    assert chosen == ({run: s for run, s in zip(runs, STATES) if s in NOT_THEIR_OWN} if expected else {})
    # FAILED by exiting 75 (stopped on SIGTERM with a checkpoint, as under CANCEL preemption): resubmitted too
    failed = records[runs[STATES.index("FAILED")]]["job_id"]
    again = {d.state for d in interrupted(plan, records, bound, frozenset({failed}))}
    assert again == ((NOT_THEIR_OWN | {"FAILED"}) if expected else set())


def test_exit_codes_from_sacct(monkeypatch):
    from slurm import scheduler

    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: "96|75:0\n97_1|1:0\n98|0:9\n")
    assert scheduler.exit_codes(["96", "97_1", "98", "99"]) == {"96": 75, "97_1": 1}


def test_the_report_job_resubmits_first_and_stops_when_it_did(smoke_yaml):
    lines = report_job.commands("py", str(smoke_yaml), ["train.epochs=2"])
    assert lines[0].startswith("py -m slurm.resubmit ") and lines[0].endswith("train.epochs=2")
    assert lines[1] == "if [ $? -eq 3 ]; then exit 0; fi" and lines[2].startswith("py -m analysis.report ")


def test_max_resubmits_is_a_key_with_a_bound():
    assert profiles.resolve({"profile": "speed"}).max_resubmits == 3
    assert profiles.resolve({"profile": "local", "max_resubmits": 0}).max_resubmits == 0
    with pytest.raises(profiles.ConfigError, match="slurm.max_resubmits: expected an integer >= 0"):
        profiles.resolve({"profile": "local", "max_resubmits": -1})
