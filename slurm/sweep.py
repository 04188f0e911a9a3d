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
writing its checkpoint; 78 the sweep directory's file system cannot hold its lock (al_core.locks);
130 interrupted (Ctrl-C) while waiting: submitted jobs keep running.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys

from al_core import tracking
from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.config import load_sweep
from slurm import backend, checks, cost, held, profiles, scheduler, waves
from slurm.ledger import locked
from slurm.plan import Plan, check_run_dirs, make_plan
from slurm.local import DebugBackend, LocalBackend
from slurm.submit import SlurmBackend, job_name

BACKENDS = {"slurm": SlurmBackend, "local": LocalBackend, "debug": DebugBackend}  # by resolved cluster name

EXIT_FAILED = 1


def _parser() -> Parser:
    p = Parser(prog="python -m slurm.sweep", description="Submit the runs of a sweep that are not finished and not queued.")
    p.sweep_arguments()
    clusters = "auto (slurm where sbatch exists, else local) | slurm | local (this machine) | debug (in this process)"
    p.add_argument("--cluster", default="auto", choices=backend.CLUSTERS, help=clusters)
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sbatch script; submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for the runs and show their progress")
    hold = "submit the job arrays held (sbatch --hold): nothing starts until `scontrol release JOBID`"
    p.add_argument("--hold", action="store_true", help=hold)
    retry = "also resubmit runs held because their node could not serve them (exit 78)"
    p.add_argument("--retry-failed", action="store_true", help=retry)
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    # Everything that can be refused is checked before anything is written or submitted.
    args, sweep = _parser().parse_sweep(argv)
    tracking.require(sweep.tracking)  # a sweep asking for W&B without wandb: one error line, nothing planned
    resources = profiles.resolve(sweep.slurm)
    cluster = backend.resolve_cluster(args.cluster, dry_run=args.dry_run)
    check_run_dirs(sweep)
    trouble = checks.problems(sweep, resources, cluster)
    if trouble and not args.dry_run:
        fail(
            f"{trouble[0]}; nothing submitted"
            + (f" ({len(trouble) - 1} more problem(s): --dry-run lists them)" if len(trouble) > 1 else "")
        )
    runner = BACKENDS[cluster](sweep, resources, args.hold)
    header = f"sweep {sweep.name}: {len(sweep.runs())} runs in {sweep.sweep_dir} | cluster {cluster} | {resources.describe()}"
    if args.dry_run:
        _, plan = _plan(runner, args, save=False)
        _print_plan(header, plan, runner, [f"warning: {t}" for t in trouble], f"dry run: {plan.summary()}; nothing submitted")
        print("\n".join(runner.dry_run(plan)), flush=True)
        return 0
    with locked(sweep.sweep_dir):
        records, plan = _plan(runner, args, save=True)
        _print_plan(header, plan, runner)
        try:
            submitted = runner.submit(plan, records)
        except backend.SubmissionError as e:
            fail(str(e), EXIT_FAILED)
        runner.after_submit(plan, submitted, sweep.path or args.sweep, args.overrides)
    lines = runner.announce(submitted, shlex.join([args.sweep, *args.overrides]), args.wait)
    if lines:
        print("\n".join(lines), flush=True)
    watched = [d.run_id for d in plan.to_submit] + [d.run_id for d in plan.active]
    if not runner.runs_here and not (args.wait and watched):
        return 0
    try:
        failed = runner.wait(watched)
    except KeyboardInterrupt:
        fail(runner.interrupted, 130)
    runner.after_wait(sweep.path or args.sweep, args.overrides)
    if not failed:
        print("all runs DONE", flush=True)
        if runner.runs_here and waves.advance(load_sweep(sweep.path or args.sweep, args.overrides)):
            return main(argv)  # a sequential study's next wave (slurm.waves), in the foreground
        return 0
    runs = f"{len(failed)} run{'s' if len(failed) > 1 else ''} ended without DONE: {', '.join(failed)}"
    print(f"{runs}; python -m slurm.status shows the end of their error logs", file=sys.stderr, flush=True)
    return EXIT_FAILED


def _print_plan(header: str, plan, runner: backend.Backend, warnings: list[str] = (), summary: str | None = None) -> None:
    """The header, one line per run, any warnings, the summary, the expected cost and the note on held runs."""
    lines = [header, *plan.lines(), *warnings, summary or plan.summary()]
    if plan.to_submit:
        at_once = runner.at_once(len(plan.tasks(runner.resources.runs_per_task)))  # the local backend: its core slots
        lines.append(cost.line(plan.sweep, plan, dataclasses.replace(runner.resources, array_parallelism=at_once)))
    if plan.held_note():
        lines.append(plan.held_note())
    print("\n".join(lines), flush=True)


def _plan(runner: backend.Backend, args, save: bool) -> tuple[dict, Plan]:
    """The records (jobs.json, or rebuilt from the scheduler: slurm.ledger.recover) and the plan made from them."""
    sweep = runner.sweep
    try:
        records = runner.records(save)
        states = scheduler.states(records, job_name(sweep))
    except scheduler.SchedulerError as e:
        fail(f"{e}; nothing submitted", EXIT_IO)
    return records, make_plan(sweep, records, states, held.read(sweep.sweep_dir), args.retry_failed)


if __name__ == "__main__":
    sys.exit(main())
