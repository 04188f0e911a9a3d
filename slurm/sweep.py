"""`python -m slurm.sweep SWEEP.yaml [key=value ...] [--cluster auto|slurm|local|debug] [--dry-run] [--wait]`

Submits every run of the sweep that is neither DONE nor queued/running, as one SLURM job array,
prints what it did and returns; `--wait` then follows the runs to the end. `--cluster local` runs
them on this machine (never more at once than cores) and `debug` in this process; both wait.
`--dry-run` prints the runs that would be submitted, those skipped and why, and the sbatch script,
and submits and writes nothing. Running it again is safe: under the sweep's lock it asks the
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

from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.config import load_sweep
from slurm import ledger, profiles, scheduler, submit
from slurm.plan import check_run_dirs, make_plan

EXIT_FAILED = 1


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.sweep", description="Submit the runs of a sweep that are not finished and not queued.")
    p.add_argument("sweep", help="sweep file, e.g. jobs/cifar10.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. al.cycles=3 slurm.partition=pt")
    p.add_argument("--cluster", default="auto", choices=submit.CLUSTERS,
                   help="auto (slurm where sbatch exists, else local) | slurm | local (this machine) | debug (in this process)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sbatch script; submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for the runs and show their progress")
    args = p.parse_intermixed_args(argv)

    # Everything that can be refused is checked before anything is written or submitted.
    sweep = load_sweep(args.sweep, args.overrides)
    resources = profiles.resolve(sweep.slurm)
    cluster = submit.resolve_cluster(args.cluster, dry_run=args.dry_run)
    check_run_dirs(sweep)
    name = submit.job_name(sweep)
    header = f"sweep {sweep.name}: {len(sweep.runs())} runs in {sweep.sweep_dir} | cluster {cluster} | {resources.describe()}"

    if args.dry_run:
        records = ledger.read(sweep.sweep_dir)
        states = _states(records, name)
        plan = make_plan(sweep, records, states)
        print(header)
        print("\n".join(plan.lines()))
        print(f"dry run: {plan.summary()}; nothing submitted")
        if cluster == "slurm":
            n = max(len(plan.to_submit), 1)
            folder = submit.new_log_folder(sweep)
            print(f"--- sbatch script ({'one job array of ' + str(n) + ' runs' if n > 1 else 'one job'}) ---")
            print(submit.sbatch_script(sweep, resources, folder, n).rstrip())
            print("--- end of sbatch script ---")
        else:
            parallel, threads = submit.local_parallelism(resources, len(plan.to_submit))
            print(f"{cluster}: no sbatch script; at most {parallel if cluster == 'local' else 1} runs at once, "
                  f"{threads} torch threads each")
        return 0

    if cluster == "slurm":
        with ledger.locked(sweep.sweep_dir):
            records = ledger.read(sweep.sweep_dir)
            plan = make_plan(sweep, records, _states(records, name))
            print(header)
            print("\n".join(plan.lines()))
            print(plan.summary())
            try:
                submitted = submit.submit_slurm(sweep, resources, plan, records)
            except submit.SubmissionError as e:
                fail(str(e), EXIT_FAILED)
        if submitted:
            ids = [j for _, j in submitted]
            array = ids[0].split("_")[0]
            print(f"submitted {len(ids)} run{'s' if len(ids) > 1 else ''} as "
                  + (f"job array {array} ({ids[0]} .. {ids[-1]})" if "_" in ids[0] else f"job {array}"))
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
        plan = make_plan(sweep, records, _states(records, name))
    print(header)
    print("\n".join(plan.lines()))
    print(plan.summary(), flush=True)
    if not args.wait:
        print(f"{cluster}: runs in the foreground (as with --wait); Ctrl-C stops them after a checkpoint", flush=True)
    failed = submit.run_here(sweep, resources, plan, cluster)
    return _report(failed)


def _states(records: dict, name: str) -> dict:
    try:
        return scheduler.states(records, name)
    except scheduler.SchedulerError as e:
        fail(f"{e}; nothing submitted", EXIT_IO)


def _report(failed: list[str]) -> int:
    if failed:
        print(f"{len(failed)} run{'s' if len(failed) > 1 else ''} ended without DONE: {', '.join(failed)}; "
              "python -m slurm.status shows the end of their error logs", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print("all runs DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
