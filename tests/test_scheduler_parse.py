"""What `squeue` and `sacct` print, read back: recorded outputs of SLURM 22.05 (the formats
slurm/scheduler.py asks for), so a machine without SLURM exercises the parsing too."""

from __future__ import annotations

import pytest

from slurm import scheduler
from slurm.scheduler import JobState, parse_states

# squeue -h -r -t all -u USER -o "%i|%T|%j": running and pending tasks, a throttled pending
# range, a stepped range, a requeued task, another user's sweep, a job of another name.
SQUEUE = """\
41_0|RUNNING|al-smoke
41_1|RUNNING|al-smoke
41_[2-5%2]|PENDING|al-smoke
42_[0-8:4]|PENDING|al-smoke
43_7|REQUEUED|al-smoke
44_0|PENDING|al-other
45|COMPLETING|al-smoke
"""

# sacct -X -n -P -o JobID,State,JobName -j ...: finished tasks, a cancellation with its author,
# a pending range accounting already knows, an out-of-memory task.
SACCT = """\
40_0|COMPLETED|al-smoke
40_1|CANCELLED by 0|al-smoke
40_[2,4-5]|PENDING|al-smoke
40_3|OUT_OF_MEMORY|al-smoke
40_6|NODE_FAIL|al-smoke
"""


def test_squeue_lines_running_pending_ranges_steps_throttles_and_requeued():
    wanted = {"41_0", "41_1", "41_2", "41_5", "41_6", "42_0", "42_4", "42_8", "42_2", "43_7", "45"}
    found = parse_states(SQUEUE, wanted, "al-smoke", "squeue")
    assert found["41_0"] == JobState("RUNNING", "squeue") and found["41_1"].state == "RUNNING"
    assert found["41_2"].state == found["41_5"].state == "PENDING"  # inside the throttled range
    assert "41_6" not in found  # outside it: the scheduler does not hold it
    assert [found[j].state for j in ("42_0", "42_4", "42_8")] == ["PENDING"] * 3
    assert "42_2" not in found  # a step of 4 skips it
    assert found["43_7"].state == "REQUEUED" and found["43_7"].active
    assert found["45"].state == "COMPLETING" and found["45"].active


def test_another_job_name_and_unknown_ids_are_left_out():
    found = parse_states(SQUEUE, {"44_0", "99_0"}, "al-smoke", "squeue")
    assert found == {}  # 44_0 is another sweep's (an id reused after a reset); 99_0 is not listed
    assert parse_states(SQUEUE, {"44_0"}, None, "squeue") == {"44_0": JobState("PENDING", "squeue")}


def test_sacct_lines_final_states_and_cancelled_by():
    wanted = {"40_0", "40_1", "40_2", "40_3", "40_4", "40_5", "40_6"}
    found = parse_states(SACCT, wanted, "al-smoke", "sacct")
    assert {j: s.state for j, s in found.items()} == {
        "40_0": "COMPLETED",
        "40_1": "CANCELLED",
        "40_2": "PENDING",
        "40_3": "OUT_OF_MEMORY",
        "40_4": "PENDING",
        "40_5": "PENDING",
        "40_6": "NODE_FAIL",
    }
    assert not any(found[j].active for j in ("40_0", "40_1", "40_3", "40_6"))  # free to submit again
    assert found["40_2"].active and found["40_2"].source == "sacct"


@pytest.mark.parametrize("noise", ["", "\n", "slurm_load_jobs error: Invalid job id specified\n", "41_0|RUNNING\n"])
def test_lines_that_are_not_three_fields_are_ignored(noise):
    assert parse_states(noise, {"41_0"}, None, "squeue") == {}


def test_slurm_states_asks_squeue_then_sacct_for_the_rest(monkeypatch):
    calls = []

    def fake_run(cmd):
        calls.append(cmd[0])
        return SQUEUE if cmd[0] == "squeue" else SACCT

    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", fake_run)
    found = scheduler.slurm_states(["41_0", "40_1", "77_0"], "al-smoke")
    assert calls == ["squeue", "sacct"]
    assert found == {"41_0": JobState("RUNNING", "squeue"), "40_1": JobState("CANCELLED", "sacct")}


def test_a_silent_squeue_refuses_to_guess(monkeypatch):
    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: None)
    with pytest.raises(scheduler.SchedulerError, match="squeue failed"):
        scheduler.slurm_states(["41_0"])


def test_states_of_records_unknown_when_the_scheduler_forgot_the_job(monkeypatch):
    monkeypatch.setattr(scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {})
    out = scheduler.states({"r": {"job_id": "12_0", "cluster": "slurm"}, "d": {"job_id": "x", "cluster": "debug"}})
    assert out["r"] == scheduler.UNKNOWN and not out["r"].active
    assert out["d"].state == "EXITED"


def test_an_id_reused_after_a_controller_reset_is_read_from_the_new_job_alone(monkeypatch):
    # Job ids restart after slurmctld loses its state, and accounting keeps the old jobs: `sacct -j
    # 362` then lists the old array's task 362_1 (another raw id) as well as the new one, old first.
    # Asked only about jobs active since the record's submission less SKEW_S (-S), sacct drops it.
    from datetime import datetime, timezone

    rows = [("362_1", "PREEMPTED", "2026-12-06T10:00:00"), ("362_1", "COMPLETED", "2026-12-07T09:00:00")]
    asked = []

    def fake_run(cmd):
        asked.append(cmd)
        start = cmd[cmd.index("-S") + 1] if "-S" in cmd else ""
        return "" if cmd[0] == "squeue" else "".join(f"{j}|{s}|al-smoke\n" for j, s, t in rows if t >= start)

    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", fake_run)
    submitted = datetime(2026, 12, 7, 9, 0, 0).astimezone(timezone.utc).isoformat()  # 09:00 local
    rec = {"job_id": "362_1", "cluster": "slurm", "submitted_at": submitted}
    assert scheduler.states({"r": rec}, "al-smoke")["r"] == JobState("COMPLETED", "sacct")
    assert asked[-1][asked[-1].index("-S") + 1] == "2026-12-07T08:50:00"  # SKEW_S before, in local time
    # a record without its time: the whole history is read, and the old task is taken for the run
    assert scheduler.states({"r": {"job_id": "362_1", "cluster": "slurm"}}, "al-smoke")["r"].state == "PREEMPTED"
    assert scheduler.since([rec, {"submitted_at": "2026-12-07T08:00:00+00:00"}]) == "2026-12-07T08:00:00+00:00"
    assert scheduler.since([rec, {"submitted_at": "garbage"}]) is None and scheduler.since([]) is None
