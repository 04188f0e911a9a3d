"""`python -m slurm.resubmit SWEEP.yaml [key=value ...]`: the report job's first step.

Runs whose last job ended for a reason not their own (PREEMPTED; NODE_FAIL; BOOT_FAIL; or FAILED
with the run's exit status 75, EXIT_INTERRUPTED: it stopped on a SIGTERM with its checkpoint on disk,
which is how a job that catches the SIGTERM of a preemption that cancels, PreemptMode=CANCEL, ends
in sacct; or it found its run locked by another job) are submitted again, each at most
`slurm.max_resubmits` times, with a new report job after them: the report waits for them. A run
that failed by itself (FAILED, OUT_OF_MEMORY, TIMEOUT, CANCELLED by a person, COMPLETED without
DONE) is left for `make sweep`, which a person runs after reading why.

Exit status: 0 nothing resubmitted (write the report now); 3 resubmitted (the new report job
writes it); 1 the scheduler could not be asked or refused; 2 bad input.
"""

from __future__ import annotations

import sys

from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.results import EXIT_INTERRUPTED
from slurm import backend, held, ledger, profiles, scheduler
from slurm.plan import Plan, make_plan
from slurm.submit import SlurmBackend, job_name

# Ended without the run's fault: submitting the same run again is the whole remedy.
NOT_THEIR_OWN = frozenset({"PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
EXIT_RESUBMITTED = 3


def interrupted(plan: Plan, records: dict, bound: int, resumable: frozenset[str] = frozenset()) -> list:
    """The plan's runs to submit whose last job ended NOT_THEIR_OWN, or FAILED by exiting to be
    resumed (its job id in `resumable`), submitted at most `bound` times again."""
    return [
        d
        for d in plan.to_submit
        if (d.state in NOT_THEIR_OWN or (d.state == "FAILED" and d.job_id in resumable))
        and records[d.run_id].get("submissions", 1) <= bound
    ]


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.resubmit", description="Resubmit runs preempted or lost with their node.")
    p.sweep_arguments()
    args, sweep = p.parse_sweep(argv)
    resources = profiles.resolve(sweep.slurm)
    scheduler.own_environment()
    runner = SlurmBackend(sweep, resources)
    with ledger.locked(sweep.sweep_dir):
        try:
            records = ledger.read(sweep.sweep_dir)
            states = scheduler.states(records, job_name(sweep))
        except scheduler.SchedulerError as e:
            fail(f"{e}; nothing resubmitted", EXIT_IO)
        plan = make_plan(sweep, records, states, held.read(sweep.sweep_dir))
        failed = [d for d in plan.to_submit if d.state == "FAILED"]
        codes = scheduler.exit_codes([d.job_id for d in failed], scheduler.since(records[d.run_id] for d in failed))
        resumable = frozenset(j for j, code in codes.items() if code == EXIT_INTERRUPTED)
        again = interrupted(plan, records, resources.max_resubmits, resumable)
        if not again:
            ended = ", ".join(sorted(NOT_THEIR_OWN))
            print(f"resubmit: none (no run ended {ended} or exited {EXIT_INTERRUPTED} to resume, within its bound)", flush=True)
            return 0
        for d in again:
            how = f"{d.state} (exit {EXIT_INTERRUPTED}: stopped to resume)" if d.state == "FAILED" else d.state
            print(f"resubmit: {d.run_id}: job {d.job_id} {how}; not the run's fault", flush=True)
        part = Plan(sweep, again + plan.active)
        try:
            submitted = runner.submit(part, records)
        except backend.SubmissionError as e:
            fail(str(e), 1)
        runner.after_submit(part, submitted, sweep.path or args.sweep, args.overrides)
    print(f"resubmit: {len(submitted)} run(s) submitted again; the new report job writes the report", flush=True)
    return EXIT_RESUBMITTED


if __name__ == "__main__":
    sys.exit(main())
