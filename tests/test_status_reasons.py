"""`make status` says why a pending run waits: squeue's %r read back, in words, with what to do."""

from __future__ import annotations

import pytest

from slurm import reasons, scheduler, status
from slurm.scheduler import JobState, parse_states

# squeue -h -r -t all -u USER -o "%i|%T|%j|%r" on the Speed-shaped cluster (.ci/slurm-cluster.sh
# up --speed): six GPU runs under a QOS cap of 4 GPUs per user.
SQUEUE = """\
7_0|RUNNING|al-smoke|None
7_1|RUNNING|al-smoke|None
7_2|RUNNING|al-smoke|None
7_3|RUNNING|al-smoke|None
7_[4-5]|PENDING|al-smoke|QOSMaxGRESPerUser
8|PENDING|al-smoke-report|Dependency
"""


def test_squeue_reason_is_read_and_not_part_of_the_name():
    found = parse_states(SQUEUE, {f"7_{i}" for i in range(6)} | {"8"}, "al-smoke", "squeue")
    assert [found[f"7_{i}"].reason for i in range(6)] == ["None"] * 4 + ["QOSMaxGRESPerUser"] * 2
    assert "8" not in found  # another name: the report job's
    assert found["7_4"] == JobState("PENDING", "squeue")  # the reason does not take part in equality
    report = parse_states(SQUEUE, {"8"}, "al-smoke-report", "squeue")["8"]
    assert (report.state, report.reason) == ("PENDING", "Dependency")


@pytest.mark.parametrize("code", sorted(reasons.REASONS))
def test_every_known_reason_has_words_and_what_to_do(code):
    text = reasons.explain(code, 4)
    assert text.startswith(f"{code}: ") and text.count(": ") >= 2 and "{" not in text


def test_the_gpu_cap_reason_names_the_cap_and_packing():
    text = reasons.explain("QOSMaxGRESPerUser", 4)
    assert "at most 4 GPUs at once" in text and "runs_per_task" in text
    assert reasons.explain("SomethingNew").startswith("SomethingNew: see JOB REASON CODES")


def test_status_prints_each_waiting_runs_reason_and_the_words_once(smoke_yaml, capsys, monkeypatch):
    from al_core.config import load_sweep
    from slurm import ledger

    sweep = load_sweep(smoke_yaml, [])
    runs = [s.run_id for s in sweep.runs()][:6]
    records: dict = {}
    for i, run in enumerate(runs):
        ledger.record_submission(records, run, f"7_{i}", "slurm", "/nonexistent.out", "/nonexistent.err")
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    ledger.write(sweep.sweep_dir, records)
    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: SQUEUE if cmd[0] == "squeue" else "")
    monkeypatch.setattr(scheduler, "gpu_cap", lambda: 4)
    assert status.main([str(smoke_yaml)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in runs}
    assert [lines[r].endswith("waits: QOSMaxGRESPerUser") for r in runs] == [False] * 4 + [True] * 2
    assert "2 runs: QOSMaxGRESPerUser: at most 4 GPUs at once for your account (QOS limit)" in out


@pytest.mark.parametrize("gpus, cap, expected", [(1, 4, 4), (2, 4, 2), (1, None, 20), (0, 4, 20), (4, 3, 1)])
def test_runs_at_once_are_those_the_gpu_cap_lets_run(smoke_yaml, monkeypatch, gpus, cap, expected):
    """The cost line's waves: array_parallelism tasks at once, fewer where the user's GPU cap says so."""
    from al_core.config import load_sweep
    from slurm import profiles
    from slurm.submit import SlurmBackend

    sweep = load_sweep(smoke_yaml, ["slurm.profile=speed", f"slurm.gpus={gpus}", "slurm.array_parallelism=20"])
    monkeypatch.setattr(scheduler, "gpu_cap", lambda: cap)
    assert SlurmBackend(sweep, profiles.resolve(sweep.slurm)).at_once(12) == expected


# sacct -n -P -o JobID,Elapsed,MaxRSS -j 45: the allocation line has no MaxRSS, its steps do
SACCT_USAGE = """\
45_0|00:01:05|
45_0.batch|00:01:05|10736K
45_0.0|00:01:05|218348K
45_1|1-00:00:10|
45_1.0|1-00:00:10|1.5G
"""


def test_sacct_usage_is_the_largest_step_and_the_allocations_elapsed(monkeypatch):
    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: SACCT_USAGE)
    assert scheduler.usage(["45_0", "45_1"]) == {"45_0": (65, 218348 * 1024), "45_1": (86410, int(1.5 * 2**30))}


def test_status_says_what_finished_jobs_used_and_the_mem_to_ask(smoke_yaml, capsys, monkeypatch):
    from al_core.config import load_sweep
    from slurm import ledger

    sweep = load_sweep(smoke_yaml, [])
    run = sweep.runs()[0].run_id
    records: dict = {}
    ledger.record_submission(records, run, "45_1", "slurm", "/x.out", "/x.err")
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    ledger.write(sweep.sweep_dir, records)
    monkeypatch.setattr(status, "is_done", lambda d: True)
    monkeypatch.setattr(scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(scheduler, "_run", lambda cmd: SACCT_USAGE if cmd[0] == "sacct" and "MaxRSS" in cmd[4] else "")
    status._print_usage(records, sweep)
    out = capsys.readouterr().out
    assert "used at most 1.50 GiB (MaxRSS, job 45_1)" in out and "slurm.mem=2G (MaxRSS + 25%)" in out
