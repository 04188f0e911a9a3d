"""Submission to SLURM: one job array per `make sweep` (slurm.local runs the same job callable here).

The runs to submit go into job arrays (one `executor.batch()`, one sbatch each) of at most the
cluster's MaxArraySize runs, each capped by array_parallelism; jobs.json is updated under the
sweep's lock after each array, and the command returns (`--wait`: `wait_slurm` follows them).

submitit's files (pickles, result pickles, logs) go to a fresh `<sweep_dir>/logs/<timestamp>/` per
submission: job ids restart at 1 when a test cluster is reset, and submitit would otherwise serve
a stale result. `<sweep_dir>/logs/runs/<run_id>.out|.err` link to each run's latest job log.
"""

from __future__ import annotations

import functools
import contextlib
import io
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Callable

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import _make_sbatch_string

from al_core.config import Sweep
from al_core.errors import ConfigError
from slurm import held, ledger, scheduler
from slurm.plan import Decision, Plan
from slurm.profiles import Resources
from slurm.watch import Watch

CLUSTERS = ("auto", "slurm", "local", "debug")


class SubmissionError(RuntimeError):
    """The scheduler refused or failed a submission (exit status 1)."""


def resolve_cluster(name: str, dry_run: bool = False) -> str:
    if name == "auto":
        return "slurm" if scheduler.have_slurm() else "local"
    if name == "slurm" and not dry_run and not scheduler.have_slurm():
        raise ConfigError(
            "--cluster slurm: sbatch not found on PATH; expected a SLURM login node, or --cluster local to run here"
        )
    return name


def job_name(sweep: Sweep) -> str:
    return f"al-{sweep.name}"


def new_log_folder(sweep: Sweep) -> Path:
    """A folder no earlier submission used (timestamp + pid), absolute: jobs run elsewhere."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return (sweep.sweep_dir / "logs" / f"{stamp}-{os.getpid()}").resolve()


# ----------------------------------------------------------------------------------------------
# SLURM
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
    todo = plan.to_submit
    if not todo:
        return []
    limit = max_array_size if max_array_size is not None else scheduler.max_array_size()
    allowance = allowance if allowance is not None else scheduler.submit_allowance()
    k = resources.runs_per_task
    if allowance is not None and allowance * k < len(todo):  # the limit counts jobs (array tasks of k runs)
        note(
            f"the cluster lets you submit {allowance} more jobs now (per-user limit); submitting {allowance * k} of "
            f"{len(todo)} runs: run `make sweep` again when some have finished to submit the rest"
        )
        todo = todo[: allowance * k]
    tasks = [todo[i : i + k] for i in range(0, len(todo), k)]  # K runs share one array task
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
    from slurm.pack import PackJob, packed_logs

    k = resources.runs_per_task
    ex = slurm_executor(sweep, resources, new_log_folder(sweep), hold)
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
    out_runs = []
    for task, job in zip(part, jobs):
        for d in task:
            out, err = (job.paths.stdout, job.paths.stderr) if k == 1 else packed_logs(sweep.run_dir(d.run_id), d.run_id)
            rec = ledger.record_submission(records, d.run_id, job.job_id, "slurm", out, err)
            if k > 1:
                rec["task_log"] = str(job.paths.stderr)
                rec["shares_task_with"] = [o.run_id for o in task if o.run_id != d.run_id]
            out_runs.append((d, job.job_id, out, err))
    return out_runs


def link_run_logs(sweep: Sweep, run_id: str, out: Path, err: Path) -> None:
    """<sweep_dir>/logs/runs/<run_id>.out|.err -> the run's latest job log (for `tail -F`)."""
    links = sweep.sweep_dir / "logs" / "runs"
    links.mkdir(parents=True, exist_ok=True)
    for target, suffix in ((out, ".out"), (err, ".err")):
        link = links / f"{run_id}{suffix}"
        # The log does not exist yet: its real path is its folder's real path and its name.
        relative = os.path.relpath(os.path.join(_real_dir(Path(target).parent), Path(target).name), _real_dir(links))
        try:
            os.symlink(relative, link)  # a run's first link: no temp file needed
            continue
        except FileExistsError:
            pass
        except OSError:
            continue  # a convenience only (e.g. a file system without symlinks)
        tmp = links / f".{run_id}{suffix}.{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(relative)
            os.replace(tmp, link)
        except OSError:
            pass


@functools.lru_cache(maxsize=64)
def _real_dir(path: Path) -> str:
    """The real path of a directory (cached: every run of a submission links into the same two)."""
    return os.path.realpath(path)


def wait_slurm(sweep: Sweep, run_ids: list[str], poll_s: float = 5.0) -> list[str]:
    """Wait until every run is DONE or its job has ended; returns the runs that ended without DONE."""
    watch = Watch(sweep, run_ids)
    name = job_name(sweep)
    ended_once: set[str] = set()
    while True:
        records = ledger.read(sweep.sweep_dir)
        mine = {r: records[r] for r in run_ids if r in records}
        try:
            states = scheduler.states(mine, name)
        except scheduler.SchedulerError as e:  # a controller restart, say: ask again at the next poll
            print(f"warning: {e}; retrying in {poll_s:.0f}s", flush=True)
            time.sleep(poll_s)
            continue
        running, ended = [], []
        for r in run_ids:
            if (sweep.run_dir(r) / "DONE").exists():
                continue
            st = states.get(r, scheduler.UNKNOWN)
            if st.state == "RUNNING":
                running.append(r)
            elif not st.active:
                ended.append(r)
        # An ended state must be seen twice: a requeue passes through states for a moment.
        failed = [r for r in ended if r in ended_once]
        ended_once = set(ended)
        unfinished = [r for r in run_ids if not (sweep.run_dir(r) / "DONE").exists()]
        finished = all(r in failed for r in unfinished)
        watch.update(running, failed)
        if finished:
            watch.close()
            return failed
        time.sleep(poll_s)
