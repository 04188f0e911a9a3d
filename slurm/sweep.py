"""`python -m slurm.sweep SWEEP.yaml [key=value ...] [--cluster auto|slurm|local|debug] [--dry-run] [--wait] [--hold]`

Submits every run of the sweep that is neither DONE nor queued/running, as one SLURM job array,
prints what it did and returns; `--wait` then follows the runs to the end. `--cluster local` runs
them on this machine (never more at once than cores) and `debug` in this process; both wait.
`--dry-run` prints the runs that would be submitted, those skipped and why, their expected cost
(slurm.cost), the sbatch script and the report job, and submits and writes nothing. On SLURM, a
report job (slurm.report_job) follows the arrays and writes the report when the last run ends;
local and debug write it at the end of their wait. `--hold` submits the arrays held (sbatch
--hold): their runs read PENDING, so a re-sweep skips them as queued, and nothing starts until
`scontrol release JOBID`. Before submitting, the login node checks what it can see (the
dataset under dataset.root, a writable results directory, the profile's interpreter). Runs whose
job found a node that could not serve them (exit 78) are held, not resubmitted, until
`--retry-failed`. Running it again is safe: under the sweep's lock it asks the
scheduler about each run's last job (jobs.json) and submits only what needs a job.

Exit status: 0 submitted (or nothing to do; with --wait, local or debug: every run DONE);
1 the scheduler refused the submission or could not be asked (squeue failed: nothing is submitted
on a guess), or (waiting) a run ended without DONE, or an I/O error;
2 bad input (sweep file, override, profile or resource value, --cluster slurm without sbatch):
one `error:` line, nothing submitted, nothing written; 75 a debug run was interrupted after
writing its checkpoint; 130 interrupted (Ctrl-C) while waiting: submitted jobs keep running.
"""

from __future__ import annotations

import shlex
import sys

from al_core import tracking
from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.config import load_sweep
from slurm import checks, cost, held, ledger, local, profiles, report_job, scheduler, submit
from slurm.plan import check_run_dirs, make_plan

EXIT_FAILED = 1


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.sweep", description="Submit the runs of a sweep that are not finished and not queued.")
    p.add_argument("sweep", help="sweep file, e.g. jobs/cifar10.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. al.cycles=3 slurm.partition=pt")
    p.add_argument(
        "--cluster",
        default="auto",
        choices=submit.CLUSTERS,
        help="auto (slurm where sbatch exists, else local) | slurm | local (this machine) | debug (in this process)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sbatch script; submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for the runs and show their progress")
    p.add_argument(
        "--hold",
        action="store_true",
        help="submit the job arrays held (sbatch --hold): nothing starts until `scontrol release JOBID`",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="also resubmit runs held because their node could not serve them (exit 78)"
    )
    args = p.parse_intermixed_args(argv)

    # Everything that can be refused is checked before anything is written or submitted.
    sweep = load_sweep(args.sweep, args.overrides)
    tracking.require(sweep.tracking)  # a sweep asking for W&B without wandb: one error line, nothing planned
    resources = profiles.resolve(sweep.slurm)
    cluster = submit.resolve_cluster(args.cluster, dry_run=args.dry_run)
    check_run_dirs(sweep)
    trouble = checks.problems(sweep, resources, cluster)
    if trouble and not args.dry_run:
        fail(
            f"{trouble[0]}; nothing submitted"
            + (f" ({len(trouble) - 1} more problem(s): --dry-run lists them)" if len(trouble) > 1 else "")
        )
    name = submit.job_name(sweep)
    held_runs = held.read(sweep.sweep_dir)
    header = f"sweep {sweep.name}: {len(sweep.runs())} runs in {sweep.sweep_dir} | cluster {cluster} | {resources.describe()}"

    if args.dry_run:
        records = _records(sweep, name, save=False) if cluster == "slurm" else ledger.read(sweep.sweep_dir)
        states = _states(records, name)
        plan = make_plan(sweep, records, states, held_runs, args.retry_failed)
        _print_plan(
            header, plan, resources, [f"warning: {line}" for line in trouble], f"dry run: {plan.summary()}; nothing submitted"
        )
        if cluster == "slurm":
            n = max(-(-len(plan.to_submit) // resources.runs_per_task), 1)  # array tasks of runs_per_task runs
            chunks = submit.array_chunks(n, scheduler.max_array_size())  # the default MaxArraySize without scontrol
            n = len(chunks[0])
            if len(chunks) > 1:
                print(f"{len(plan.to_submit)} runs exceed the cluster's MaxArraySize: {len(chunks)} job arrays")
            folder = submit.new_log_folder(sweep)
            print(f"--- sbatch script ({'one job array of ' + str(n) + ' runs' if n > 1 else 'one job'}) ---")
            print(submit.sbatch_script(sweep, resources, folder, n, hold=args.hold).rstrip())
            print("--- end of sbatch script ---")
            print(_report_job_note(sweep, resources))
        else:
            parallel, threads = local.local_parallelism(resources, len(plan.to_submit))
            print(
                f"{cluster}: no sbatch script; at most {parallel if cluster == 'local' else 1} runs at once, "
                f"{threads} torch threads each"
            )
        return 0

    if cluster == "slurm":
        with ledger.locked(sweep.sweep_dir):
            records = _records(sweep, name, save=True)
            plan = make_plan(sweep, records, _states(records, name), held_runs, args.retry_failed)
            _print_plan(header, plan, resources)
            try:
                submitted = submit.submit_slurm(sweep, resources, plan, records, hold=args.hold)
            except submit.SubmissionError as e:
                fail(str(e), EXIT_FAILED)
            _report_job(sweep, resources, args, plan, submitted)
        if submitted:
            ids = [j for _, j in submitted]
            arrays = list(dict.fromkeys(j.split("_")[0] for j in ids))
            if len(arrays) > 1:
                print(f"submitted {len(ids)} runs as {len(arrays)} job arrays: {', '.join(arrays)}")
            else:
                print(
                    f"submitted {len(ids)} run{'s' if len(ids) > 1 else ''} as "
                    + (f"job array {arrays[0]} ({ids[0]} .. {ids[-1]})" if "_" in ids[0] else f"job {arrays[0]}")
                )
            print(f"jobs: {ledger.jobs_path(sweep.sweep_dir)}; logs: {sweep.sweep_dir / 'logs' / 'runs'}/<run_id>.out")
        else:
            print("nothing to submit")
        print(f"progress: python -m slurm.status {shlex.join([args.sweep, *args.overrides])}", flush=True)
        if not args.wait:
            return 0
        watched = [d.run_id for d in plan.to_submit] + [d.run_id for d in plan.active]
        if not watched:
            return 0
        try:
            failed = submit.wait_slurm(sweep, watched)
        except KeyboardInterrupt:
            fail("interrupted while waiting; the submitted jobs keep running (python -m slurm.status to follow them)", 130)
        return _report(failed)

    # local / debug: this process runs (or throttles) the runs, so it always waits.
    with ledger.locked(sweep.sweep_dir):
        records = ledger.read(sweep.sweep_dir)
        plan = make_plan(sweep, records, _states(records, name), held_runs, args.retry_failed)
    _print_plan(header, plan, resources)
    if not args.wait:
        print(f"{cluster}: runs in the foreground (as with --wait); Ctrl-C stops them after a checkpoint", flush=True)
    failed = local.run_here(sweep, resources, plan, cluster)
    if resources.report_job:  # as `make demo`: the report of whatever the runs wrote, finished or not
        report_job.run_locally(sweep.path or args.sweep, args.overrides)
    return _report(failed)


def _report_job_note(sweep, resources) -> str:
    if not resources.report_job:
        return "report job: none (slurm.report_job: false); run `make report` when the runs have ended"
    r = resources.report
    return (
        f"report job: one CPU job after the arrays (--dependency=afterany), partition {r.partition or '(default)'}, "
        f"{r.cpus} CPU, mem {r.mem or '(default)'}, time {profiles.format_minutes(r.time_min)}; "
        f"writes {report_job.report_path(sweep)}"
    )


def _report_job(sweep, resources, args, plan, submitted: list) -> None:
    """After the arrays (under the lock): the report job waits for every array still queued or running."""
    new = [j.split("_")[0] for _, j in submitted]
    earlier = [d.job_id.split("_")[0] for d in plan.active if d.job_id]
    arrays = list(dict.fromkeys(new + earlier))
    try:
        report_job.ensure(sweep, resources, sweep.path or args.sweep, args.overrides, arrays, bool(submitted))
    except (scheduler.SchedulerError, OSError) as e:  # the runs are submitted: say so, do not fail them
        print(f"warning: no report job ({e}); run `make report` when the runs have ended", file=sys.stderr, flush=True)


def _print_plan(header: str, plan, resources, warnings: list[str] = (), summary: str | None = None) -> None:
    """The header, one line per run, any warnings, the summary, the expected cost and the note on held runs."""
    lines = [header, *plan.lines(), *warnings, summary or plan.summary()]
    if plan.to_submit:
        lines.append(cost.line(plan.sweep, plan, resources))
    if plan.held_note():
        lines.append(plan.held_note())
    print("\n".join(lines), flush=True)


def _records(sweep, name: str, save: bool) -> dict:
    """jobs.json, or, when it is missing or damaged, the records rebuilt from what the scheduler
    still holds (saved only under the lock, by a real submission)."""
    try:
        return ledger.recover(sweep.sweep_dir, name, save=save)
    except scheduler.SchedulerError as e:
        fail(f"{e}; nothing submitted", EXIT_IO)


def _states(records: dict, name: str) -> dict:
    try:
        return scheduler.states(records, name)
    except scheduler.SchedulerError as e:
        fail(f"{e}; nothing submitted", EXIT_IO)


def _report(failed: list[str]) -> int:
    if failed:
        print(
            f"{len(failed)} run{'s' if len(failed) > 1 else ''} ended without DONE: {', '.join(failed)}; "
            "python -m slurm.status shows the end of their error logs",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    print("all runs DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
