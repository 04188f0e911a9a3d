"""Submission to SLURM: one job array per `make sweep` (`SlurmBackend`, after slurm.backend's interface).

The runs to submit go into job arrays (one `executor.batch()`, one sbatch each) of at most the
cluster's MaxArraySize runs, each capped by array_parallelism; jobs.json is updated under the
sweep's lock after each array, and the command returns (`--wait`: `SlurmBackend.poll` follows them).

submitit's files (pickles, result pickles, logs) and the project's submitted.json (which runs each
job runs) go to a fresh `<sweep_dir>/logs/<timestamp>/` per submission: job ids restart at 1 when a
test cluster is reset, and submitit would otherwise serve a stale result. `<sweep_dir>/logs/runs/<run_id>.out|.err` link to each run's latest job log.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import _make_sbatch_string

from al_core.config import Sweep
from slurm import held, ledger, profiles, report_job, scheduler
from slurm.backend import Backend, SubmissionError, Submitted, link_run_logs, new_log_folder, record_task
from slurm.plan import Decision, Plan
from slurm.profiles import Resources


def job_name(sweep: Sweep) -> str:
    return f"al-{sweep.name}"


def slurm_python(resources: Resources) -> str:
    return resources.python or shlex.quote(sys.executable)


def executor_parameters(sweep: Sweep, resources: Resources, hold: bool = False) -> dict:
    """submitit's parameters of the sweep's arrays; `hold`: submitted held (`#SBATCH --hold`)."""
    params = resources.executor_parameters(job_name(sweep))
    if hold:
        params["additional_parameters"] = {**params.get("additional_parameters", {}), "hold": True}
    return params


def sbatch_script(sweep: Sweep, resources: Resources, folder: Path, n_runs: int, hold: bool = False) -> str:
    """The sbatch script a submission of `n_runs` writes (what SlurmExecutor.batch() would submit)."""
    params = executor_parameters(sweep, resources, hold)
    command = " ".join([slurm_python(resources), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_runs if n_runs > 1 else None, **params)


def slurm_executor(sweep: Sweep, resources: Resources, folder: Path, hold: bool = False) -> submitit.SlurmExecutor:
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=resources.max_timeouts, python=slurm_python(resources))
    ex.update_parameters(**executor_parameters(sweep, resources, hold))
    return ex


def array_chunks(n: int, max_array_size: int) -> list[range]:
    """Split `n` runs into arrays the cluster accepts (indices 0..max_array_size-1 each)."""
    size = max(1, max_array_size)
    return [range(lo, min(lo + size, n)) for lo in range(0, n, size)]


def submit_slurm(
    sweep: Sweep,
    resources: Resources,
    plan: Plan,
    records: dict[str, dict],
    max_array_size: int | None = None,
    allowance: int | None = None,
    note: Callable[[str], None] = lambda s: print(s, flush=True),
    hold: bool = False,
) -> list[tuple[Decision, str]]:
    """Submit every run of `plan.to_submit` as job arrays within the cluster's MaxArraySize (and
    the user's job limit where the cluster shows one); update `records`. Call under the lock.

    Each array is recorded in jobs.json as soon as sbatch accepts it, so a refusal of a later
    array leaves the earlier ones known (a re-sweep then submits only the rest). `hold`: the
    arrays are submitted held (sbatch --hold; their tasks read PENDING until released).
    """
    tasks = plan.tasks(resources.runs_per_task)  # K runs share one array task
    if not tasks:
        return []
    limit = max_array_size if max_array_size is not None else scheduler.max_array_size()
    allowance = allowance if allowance is not None else scheduler.submit_allowance()
    if allowance is not None and allowance < len(tasks):  # the limit counts jobs (array tasks of k runs)
        note(
            f"the cluster lets you submit {allowance} more jobs now (per-user limit); submitting "
            f"{sum(map(len, tasks[:allowance]))} of {len(plan.to_submit)} runs: run `make sweep` again when some "
            "have finished to submit the rest"
        )
        tasks = tasks[:allowance]
    chunks = array_chunks(len(tasks), limit)
    if len(chunks) > 1:
        note(f"{len(tasks)} tasks exceed the cluster's MaxArraySize of {limit}: submitting {len(chunks)} job arrays")
    submitted: list[tuple[Decision, str]] = []
    # The log links (two new files a run: seconds for 1,000 runs on a slow file system) are made by
    # one thread while the next arrays are pickled and submitted; all are made before returning.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="link-logs") as linker:
        links = []
        for n, chunk in enumerate(chunks, 1):
            part = [tasks[i] for i in chunk]
            for d, job_id, out, err in _submit_array(sweep, resources, part, records, hold, len(submitted)):
                submitted.append((d, job_id))
                links.append(linker.submit(link_run_logs, sweep, d.run_id, out, err))
            # Every array is in jobs.json at once (a killed sweep leaves it known); only the last
            # write waits for the disk (fsync): a rename already survives the process.
            ledger.write(sweep.sweep_dir, records, durable=n == len(chunks))
        for future in links:
            future.result()
    return submitted


def _submit_array(
    sweep: Sweep, resources: Resources, part: list[list[Decision]], records: dict, hold: bool, before: int
) -> list[tuple[Decision, str, Path, Path]]:
    """One job array of `part` (its tasks of runs_per_task runs); records each run's new job in
    `records`; returns (decision, job id, stdout log, stderr log) per run."""
    from slurm.job import RunJob  # imports the training stack: only when submitting
    from slurm.pack import PackJob

    k = resources.runs_per_task
    folder = new_log_folder(sweep)
    ex = slurm_executor(sweep, resources, folder, hold)
    jobs = []
    held.release(sweep.sweep_dir, [d.run_id for t in part for d in t])  # retried: a new exit 78 holds them again
    try:  # submitit prints a refused sbatch's stderr; the SubmissionError below carries it in one line
        with contextlib.redirect_stderr(io.StringIO()), ex.batch():
            for task in part:
                runs = [RunJob(d.spec, sweep.run_dir(d.run_id)) for d in task]
                jobs.append(ex.submit(runs[0] if k == 1 else PackJob(runs, resources.gpu_mem_per_run)))
    except (FailedJobError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        done = f" ({before} runs in earlier arrays were submitted)" if before else ""
        raise SubmissionError(f"submitting {sum(map(len, part))} runs failed: {message}{done}") from None
    runs = [run for task, job in zip(part, jobs) for run in record_task(sweep, records, task, job, "slurm", k > 1)]
    ledger.record_array(folder, [(d.run_id, job_id, out, err) for d, job_id, out, err in runs])  # JSON: never a pickle
    return runs


class SlurmBackend(Backend):
    """Job arrays on SLURM; the command returns once they are submitted (`--wait`: polls squeue/sacct)."""

    cluster = "slurm"
    interrupted = "interrupted while waiting; the submitted jobs keep running (python -m slurm.status to follow them)"

    ended_once: frozenset[str] = frozenset()  # runs whose job read as ended at the last poll

    def records(self, save: bool) -> dict[str, dict]:
        """jobs.json, or, when it is missing or damaged, the records rebuilt from what the scheduler
        still holds (saved only under the lock, by a real submission)."""
        return ledger.recover(self.sweep.sweep_dir, job_name(self.sweep), save=save)

    def at_once(self, n_tasks: int) -> int:
        """array_parallelism tasks at once, fewer where the user's GPU cap (QOS or association) allows fewer."""
        cap = scheduler.gpu_cap() if self.resources.gpus else None
        if cap is None:
            return self.resources.array_parallelism
        return max(1, min(self.resources.array_parallelism, cap // self.resources.gpus))

    def dry_run(self, plan: Plan) -> list[str]:
        n = max(len(plan.tasks(self.resources.runs_per_task)), 1)  # array tasks of runs_per_task runs
        chunks = array_chunks(n, scheduler.max_array_size())  # the default MaxArraySize without scontrol
        n, lines = len(chunks[0]), []
        if len(chunks) > 1:
            lines.append(f"{len(plan.to_submit)} runs exceed the cluster's MaxArraySize: {len(chunks)} job arrays")
        script = sbatch_script(self.sweep, self.resources, new_log_folder(self.sweep), n, hold=self.hold)
        lines += [f"--- sbatch script ({'one job array of ' + str(n) + ' runs' if n > 1 else 'one job'}) ---"]
        return [*lines, script.rstrip(), "--- end of sbatch script ---", self._report_job_note()]

    def _report_job_note(self) -> str:
        if not self.resources.report_job:
            return "report job: none (slurm.report_job: false); run `make report` when the runs have ended"
        r = self.resources.report
        return (
            f"report job: one CPU job after the arrays (--dependency=afterany), partition {r.partition or '(default)'}, "
            f"{r.cpus} CPU, mem {r.mem or '(default)'}, time {profiles.format_minutes(r.time_min)}; "
            f"writes {report_job.report_path(self.sweep)}"
        )

    def submit(self, plan: Plan, records: dict[str, dict]) -> Submitted:
        return submit_slurm(self.sweep, self.resources, plan, records, hold=self.hold)

    def after_submit(self, plan: Plan, submitted: Submitted, sweep_path: str, overrides: list[str]) -> None:
        """The report job waits for every array still queued or running."""
        new = [j.split("_")[0] for _, j in submitted]
        earlier = [d.job_id.split("_")[0] for d in plan.active if d.job_id]
        arrays = list(dict.fromkeys(new + earlier))
        try:
            report_job.ensure(self.sweep, self.resources, sweep_path, overrides, arrays, bool(submitted))
        except (scheduler.SchedulerError, OSError) as e:  # the runs are submitted: say so, do not fail them
            print(f"warning: no report job ({e}); run `make report` when the runs have ended", file=sys.stderr, flush=True)

    def announce(self, submitted: Submitted, command: str, wait: bool) -> list[str]:
        ids = [j for _, j in submitted]
        arrays = list(dict.fromkeys(j.split("_")[0] for j in ids))
        if len(arrays) > 1:
            lines = [f"submitted {len(ids)} runs as {len(arrays)} job arrays: {', '.join(arrays)}"]
        elif ids:
            lines = [
                f"submitted {len(ids)} run{'s' if len(ids) > 1 else ''} as "
                + (f"job array {arrays[0]} ({ids[0]} .. {ids[-1]})" if "_" in ids[0] else f"job {arrays[0]}")
            ]
        logs = f"jobs: {ledger.jobs_path(self.sweep.sweep_dir)}; logs: {self.sweep.sweep_dir / 'logs' / 'runs'}/<run_id>.out"
        lines = [*lines, logs] if ids else ["nothing to submit"]
        return [*lines, f"progress: python -m slurm.status {command}"]

    def poll(self, run_ids: list[str]) -> tuple[list[str], list[str], bool]:
        records = ledger.read(self.sweep.sweep_dir)
        states = scheduler.states({r: records[r] for r in run_ids if r in records}, job_name(self.sweep))
        unfinished = [r for r in run_ids if not self.done(r)]
        running = [r for r in unfinished if states.get(r, scheduler.UNKNOWN).state == "RUNNING"]
        ended = [r for r in unfinished if not states.get(r, scheduler.UNKNOWN).active]
        # An ended state must be seen twice: a requeue passes through states for a moment.
        failed = [r for r in ended if r in self.ended_once]
        self.ended_once = frozenset(ended)
        return running, failed, all(r in failed for r in unfinished)
