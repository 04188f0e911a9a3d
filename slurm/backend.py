"""One interface for running a sweep's tasks, after submitit's Executor: `submit` the plan's tasks
(each run recorded in jobs.json, its logs linked), `poll` their runs, `wait` for them. `make`
chooses `SlurmBackend` (slurm.submit), `LocalBackend` or `DebugBackend` (slurm.local). The runs are
grouped into tasks once (`Plan.tasks(runs_per_task)`); on every backend the K runs of a task share it.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from al_core.config import Sweep
from al_core.errors import ConfigError
from al_core.results import is_done
from slurm import ledger, scheduler
from slurm.plan import Decision, Plan
from slurm.profiles import Resources
from slurm.watch import Watch

CLUSTERS = ("auto", "slurm", "local", "debug")
Submitted = list[tuple[Decision, str]]  # (run, its job id) per run submitted


class SubmissionError(RuntimeError):
    """The scheduler refused or failed a submission (exit status 1)."""


class Backend:
    """Submit a plan's tasks, poll their runs, wait for them (subclasses: `submit`, `poll`, `dry_run`)."""

    cluster = ""  # the name jobs.json records
    runs_here = False  # this process runs (or throttles) the runs: it always waits for them
    poll_s = 5.0
    interrupted = "interrupted"  # the error line for Ctrl-C while waiting (exit 130)

    def __init__(self, sweep: Sweep, resources: Resources, hold: bool = False) -> None:
        self.sweep, self.resources, self.hold = sweep, resources, hold
        self.watch: Watch | None = None

    def records(self, save: bool) -> dict[str, dict]:
        """The sweep's jobs.json (`save`: a real submission, under the lock)."""
        return ledger.read(self.sweep.sweep_dir)

    def dry_run(self, plan: Plan) -> list[str]:
        """What a submission of `plan` would do, beyond the plan itself."""
        raise NotImplementedError

    def at_once(self, n_tasks: int) -> int:
        """How many of `n_tasks` tasks run at the same time (the cost line's waves)."""
        return self.resources.array_parallelism

    def submit(self, plan: Plan, records: dict[str, dict]) -> Submitted:
        """Submit the plan's tasks; every run's job goes into `records` and jobs.json. Under the lock."""
        raise NotImplementedError

    def after_submit(self, plan: Plan, submitted: Submitted, sweep_path: str, overrides: list[str]) -> None:
        """Still under the lock, once the runs are submitted (SLURM: the report job)."""

    def announce(self, submitted: Submitted, command: str, wait: bool) -> list[str]:
        """What to print once the lock is released."""
        return []

    def poll(self, run_ids: list[str]) -> tuple[list[str], list[str], bool]:
        """(runs running now, runs that ended without DONE, whether every run has ended)."""
        raise NotImplementedError

    def wait(self, run_ids: list[str]) -> list[str]:
        """Until every run is DONE or its job has ended; returns the runs that ended without DONE."""
        self.watch = Watch(self.sweep, run_ids)
        while True:
            try:
                running, failed, ended = self.poll(run_ids)
            except scheduler.SchedulerError as e:  # a controller restart, say: ask again at the next poll
                print(f"warning: {e}; retrying in {self.poll_s:.0f}s", flush=True)
                time.sleep(self.poll_s)
                continue
            self.watch.update(running, failed)
            if ended:
                self.watch.close()
                return failed
            time.sleep(self.poll_s)

    def after_wait(self, sweep_path: str, overrides: list[str]) -> None:
        """Once the runs have ended (local and debug: the report)."""

    def done(self, run_id: str) -> bool:
        return is_done(self.sweep.run_dir(run_id))


def resolve_cluster(name: str, dry_run: bool = False) -> str:
    if name == "auto":
        name = "slurm" if scheduler.have_slurm() else "local"
    if name == "slurm" and not dry_run and not scheduler.have_slurm():
        raise ConfigError(
            "--cluster slurm: sbatch not found on PATH; expected a SLURM login node, or --cluster local to run here"
        )
    if name == "slurm" and not dry_run and shutil.which("srun") is None:  # every job step runs under srun
        raise ConfigError(
            "--cluster slurm: sbatch is on PATH but srun is not; expected SLURM's client commands "
            "(sbatch, srun, squeue, sacct) all installed, or --cluster local to run here"
        )
    return name


def new_log_folder(sweep: Sweep) -> Path:
    """A folder no earlier submission used (timestamp + pid), absolute: jobs run elsewhere."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return (sweep.sweep_dir / "logs" / f"{stamp}-{os.getpid()}").resolve()


def record_task(sweep: Sweep, records: dict, task: list[Decision], job, cluster: str, packed: bool) -> list[tuple]:
    """Each run of one task in `records`: its job, and its logs (`packed`: the run's own, slurm.pack;
    else the job's). Returns (decision, job id, stdout log, stderr log) per run."""
    from slurm.pack import packed_logs

    out_runs = []
    for d in task:
        out, err = packed_logs(sweep.run_dir(d.run_id), d.run_id) if packed else (job.paths.stdout, job.paths.stderr)
        rec = ledger.record_submission(records, d.run_id, job.job_id, cluster, out, err)
        if packed:
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
