"""Submission: one job array per `make sweep` on SLURM, or the same job callable run locally.

- slurm: the runs to submit go into job arrays (one `executor.batch()`, one sbatch each) of at
  most the cluster's MaxArraySize runs, each capped by array_parallelism; jobs.json is updated
  under the sweep's lock after each array, and the command returns.
- local: submitit's local executor, never more runs at once than cores; it stays in the
  foreground (the throttle lives in this process), so it always waits.
- debug: submitit's debug executor, in this process, one run after another (for a debugger).

submitit's files (pickles, result pickles, logs) go to a fresh `<sweep_dir>/logs/<timestamp>/` per
submission: job ids restart at 1 when a test cluster is reset, and submitit would otherwise serve
a stale result. `<sweep_dir>/logs/runs/<run_id>.out|.err` link to each run's latest job log.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import submitit
from submitit.core.utils import FailedJobError, environment_variables
from submitit.slurm.slurm import _make_sbatch_string

from al_core.config import Sweep
from al_core.errors import ConfigError
from slurm import held, ledger, scheduler
from slurm.plan import Decision, Plan, progress
from slurm.profiles import Resources, source_tree

CLUSTERS = ("auto", "slurm", "local", "debug")


class SubmissionError(RuntimeError):
    """The scheduler refused or failed a submission (exit status 1)."""


def resolve_cluster(name: str, dry_run: bool = False) -> str:
    if name == "auto":
        return "slurm" if scheduler.have_slurm() else "local"
    if name == "slurm" and not dry_run and not scheduler.have_slurm():
        raise ConfigError("--cluster slurm: sbatch not found on PATH; expected a SLURM login node, "
                          "or --cluster local to run here")
    return name


def job_name(sweep: Sweep) -> str:
    return f"al-{sweep.name}"


def new_log_folder(sweep: Sweep) -> Path:
    """A folder no earlier submission used (timestamp + pid), absolute: jobs run elsewhere."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return (sweep.sweep_dir / "logs" / f"{stamp}-{os.getpid()}").resolve()


def local_parallelism(resources: Resources, n_runs: int) -> tuple[int, int]:
    """(runs at once, torch threads per run) for this machine: runs x threads <= cores."""
    cores = os.cpu_count() or 1
    parallel = max(1, min(cores, resources.array_parallelism, max(n_runs, 1)))
    return parallel, max(1, cores // parallel)


# ----------------------------------------------------------------------------------------------
# SLURM
def slurm_python(resources: Resources) -> str:
    return resources.python or shlex.quote(sys.executable)


def sbatch_script(sweep: Sweep, resources: Resources, folder: Path, n_runs: int) -> str:
    """The sbatch script a submission of `n_runs` writes (what SlurmExecutor.batch() would submit)."""
    params = resources.executor_parameters(job_name(sweep))
    command = " ".join([slurm_python(resources), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_runs if n_runs > 1 else None, **params)


def slurm_executor(sweep: Sweep, resources: Resources, folder: Path) -> submitit.SlurmExecutor:
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=resources.max_timeouts, python=slurm_python(resources))
    ex.update_parameters(**resources.executor_parameters(job_name(sweep)))
    return ex


def array_chunks(n: int, max_array_size: int) -> list[range]:
    """Split `n` runs into arrays the cluster accepts (indices 0..max_array_size-1 each)."""
    size = max(1, max_array_size)
    return [range(lo, min(lo + size, n)) for lo in range(0, n, size)]


def submit_slurm(sweep: Sweep, resources: Resources, plan: Plan, records: dict[str, dict],
                 max_array_size: int | None = None, allowance: int | None = None,
                 note: Callable[[str], None] = lambda s: print(s, flush=True)) -> list[tuple[Decision, str]]:
    """Submit every run of `plan.to_submit` as job arrays within the cluster's MaxArraySize (and
    the user's job limit where the cluster shows one); update `records`. Call under the lock.

    Each array is recorded in jobs.json as soon as sbatch accepts it, so a refusal of a later
    array leaves the earlier ones known (a re-sweep then submits only the rest).
    """
    todo = plan.to_submit
    if not todo:
        return []
    from slurm.job import RunJob  # imports the training stack: only when submitting
    from slurm.pack import PackJob, packed_logs

    limit = max_array_size if max_array_size is not None else scheduler.max_array_size()
    allowance = allowance if allowance is not None else scheduler.submit_allowance()
    k = resources.runs_per_task
    if allowance is not None and allowance * k < len(todo):  # the limit counts jobs (array tasks of k runs)
        note(f"the cluster lets you submit {allowance} more jobs now (per-user limit); submitting {allowance * k} of "
             f"{len(todo)} runs: run `make sweep` again when some have finished to submit the rest")
        todo = todo[:allowance * k]
    tasks = [todo[i:i + k] for i in range(0, len(todo), k)]  # K runs share one array task
    chunks = array_chunks(len(tasks), limit)
    if len(chunks) > 1:
        note(f"{len(tasks)} tasks exceed the cluster's MaxArraySize of {limit}: submitting {len(chunks)} job arrays")
    submitted = []
    for chunk in chunks:
        part = [tasks[i] for i in chunk]
        folder = new_log_folder(sweep)
        ex = slurm_executor(sweep, resources, folder)
        jobs = []
        held.release(sweep.sweep_dir, [d.run_id for t in part for d in t])  # retried: a new exit 78 holds them again
        try:
            with ex.batch():
                for task in part:
                    runs = [RunJob(d.spec, sweep.run_dir(d.run_id)) for d in task]
                    jobs.append(ex.submit(runs[0] if k == 1 else PackJob(runs, resources.gpu_mem_per_run)))
        except (FailedJobError, OSError) as e:
            message = " ".join(str(e).split()) or type(e).__name__
            done = f" ({len(submitted)} runs in earlier arrays were submitted)" if submitted else ""
            raise SubmissionError(f"submitting {sum(map(len, part))} runs failed: {message}{done}") from None
        for task, job in zip(part, jobs):
            for d in task:
                out, err = (job.paths.stdout, job.paths.stderr) if k == 1 else packed_logs(sweep.run_dir(d.run_id), d.run_id)
                rec = ledger.record_submission(records, d.run_id, job.job_id, "slurm", out, err)
                if k > 1:
                    rec["task_log"] = str(job.paths.stderr)
                    rec["shares_task_with"] = [o.run_id for o in task if o.run_id != d.run_id]
                submitted.append((d, job.job_id))
                link_run_logs(sweep, d.run_id, out, err)
        ledger.write(sweep.sweep_dir, records)
    return submitted


def link_run_logs(sweep: Sweep, run_id: str, out: Path, err: Path) -> None:
    """<sweep_dir>/logs/runs/<run_id>.out|.err -> the run's latest job log (for `tail -F`)."""
    links = sweep.sweep_dir / "logs" / "runs"
    links.mkdir(parents=True, exist_ok=True)
    for target, suffix in ((out, ".out"), (err, ".err")):
        link = links / f"{run_id}{suffix}"
        tmp = links / f".{run_id}{suffix}.{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(os.path.relpath(Path(target).resolve(), links.resolve()))
            os.replace(tmp, link)
        except OSError:
            pass  # a convenience only (e.g. a file system without symlinks)


# ----------------------------------------------------------------------------------------------
# Progress while waiting (local runs and `--wait`)
class Watch:
    """Prints the progress of a set of runs: finished / total, each running run's latest cycle, an ETA.

    On a terminal (`tty`, default: stdout is one) it is a single line redrawn in place; into a file
    or a job log, plain timestamped lines when anything changed (and once a minute).
    """

    def __init__(self, sweep: Sweep, run_ids: list[str], print_fn: Callable[[str], None] = lambda s: print(s, flush=True),
                 heartbeat_s: float = 60, tty: bool | None = None):
        self.sweep = sweep
        self.specs = {s.run_id: s for s in sweep.runs() if s.run_id in set(run_ids)}
        self.print = print_fn
        self.heartbeat_s = heartbeat_s
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.line = ""  # the progress line on the terminal (tty), redrawn after each note
        self.t0 = time.monotonic()
        self.cycles0 = self._cycles()
        self.last_key: tuple = ()
        self.last_time = 0.0

    def _cycles(self) -> int:
        return sum(progress(self.sweep, s).cycles for s in self.specs.values())

    def update(self, running: list[str], failed: list[str]) -> None:
        """Print the progress when anything changed (a run, a cycle), else once a minute."""
        progs = {r: progress(self.sweep, s) for r, s in self.specs.items()}
        running = [r for r in running if r in progs and not progs[r].done]
        done = sum(p.done for p in progs.values())
        cycles = sum(p.cycles for p in progs.values())
        total = sum(p.total for p in progs.values())
        key = (done, tuple(running), tuple(failed), tuple(p.cycles for p in progs.values()))
        now = time.monotonic()
        if self.tty:
            self._redraw(done, len(progs), len(running), failed, cycles, total, now)
            return
        if key == self.last_key and now - self.last_time < self.heartbeat_s:
            return
        self.last_key, self.last_time = key, now
        gained = cycles - self.cycles0
        eta = "?" if gained <= 0 else _duration((total - cycles) * (now - self.t0) / gained)
        if done == len(progs):
            eta = "0s"
        waiting = max(len(progs) - done - len(running) - len(failed), 0)
        lines = [f"[{datetime.now():%H:%M:%S}] {done}/{len(progs)} runs done, {len(running)} running, {waiting} queued"
                 + (f", {len(failed)} failed" if failed else "") + f" | cycles {cycles}/{total} | ETA {eta}"]
        for r in running:
            p = progs[r]
            acc = f", acc {100 * p.accuracy:.2f}%" if p.accuracy is not None else ""
            lines.append(f"    {r}: cycle {p.cycles}/{p.total} finished{acc}")
        self.print("\n".join(lines))

    def _redraw(self, done: int, n: int, running: int, failed: list[str], cycles: int, total: int, now: float) -> None:
        """The terminal's one line: runs done / total, running, cycles, elapsed, ETA (from the cycles so far)."""
        gained = cycles - self.cycles0
        elapsed = now - self.t0
        eta = "0s" if done == n else ("?" if gained <= 0 else _duration((total - cycles) * elapsed / gained))
        line = (f"runs {done}/{n} done, {running} running" + (f", {len(failed)} failed" if failed else "")
                + f" | cycles {cycles}/{total} | {_duration(elapsed)} elapsed | ETA {eta}")
        if line != self.line:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
            self.line = line

    def note(self, message: str) -> None:
        """An event line (a run started, done, failed): timestamped in a log; on a terminal it is
        printed above the progress line, which is then redrawn."""
        if self.tty:
            sys.stdout.write("\r\033[K" + message + "\n" + self.line)
            sys.stdout.flush()
        else:
            self.print(f"[{datetime.now():%H:%M:%S}] {message}")

    def close(self) -> None:
        """End the terminal's progress line (the next output starts on a line of its own)."""
        if self.tty and self.line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.line = ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


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


# ----------------------------------------------------------------------------------------------
# Local and debug execution (this machine)
def run_here(sweep: Sweep, resources: Resources, plan: Plan, cluster: str, poll_s: float = 1.0) -> list[str]:
    """Run the plan's runs on this machine (local: child processes; debug: in-process); wait for them.

    Local: one process per core slot, each running its share of the runs one after the other
    (`RunChain`): the interpreter starts and torch is imported once per slot, not once per run
    (about 4 CPU-seconds each on a 2-core VM, more than a small run's training). Each start
    re-checks jobs.json under the lock, so a concurrent `make sweep` never starts a run twice.
    Returns the runs that ended without DONE.
    """
    from slurm.job import RunChain, RunJob

    todo = [d.spec for d in plan.to_submit]
    others = [d.run_id for d in plan.active]  # started by another invocation: watched, not started
    parallel, threads = local_parallelism(resources, len(todo))
    folder = new_log_folder(sweep)
    watch = Watch(sweep, [s.run_id for s in todo] + others)
    if cluster == "debug":
        ex: submitit.Executor = submitit.DebugExecutor(folder=folder)
        batches = [[s] for s in todo]
    else:
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=resources.max_timeouts)
        ex.update_parameters(timeout_min=resources.time_min, signal_delay_s=resources.signal_delay_s)
        watch.note(f"local: at most {parallel} runs at once, {threads} torch thread{'s' if threads > 1 else ''} each "
                   f"({os.cpu_count()} cores); logs in {folder}")
        batches = [todo[i::parallel] for i in range(parallel)]  # round robin: each slot gets the grid's mix
    running: dict[str, submitit.Job] = {}
    chains: dict[str, list[str]] = {}  # job id -> its runs in order (the first not DONE is the one running)
    failed: list[str] = []
    # The job processes import al_core and slurm from this repository, and share the cores.
    env = {"PYTHONPATH": os.pathsep.join(p for p in (source_tree(), os.environ.get("PYTHONPATH", "")) if p),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    queue = [b for b in batches if b]
    while queue or running or others:
        while queue and len({j.job_id for j in running.values()}) < (1 if cluster == "debug" else parallel):
            batch = queue.pop(0)
            chosen = []
            with ledger.locked(sweep.sweep_dir, wait_note=False):
                records = ledger.read(sweep.sweep_dir)
                for spec in batch:
                    rec = records.get(spec.run_id)
                    if (sweep.run_dir(spec.run_id) / "DONE").exists():
                        watch.note(f"{spec.run_id}: DONE meanwhile; not started")
                        continue
                    if rec and scheduler.states({spec.run_id: rec}).get(spec.run_id, scheduler.UNKNOWN).active:
                        watch.note(f"{spec.run_id}: started meanwhile by another submission (job {rec['job_id']}); not started")
                        others.append(spec.run_id)
                        continue
                    chosen.append(spec)
                if not chosen:
                    continue
                held.release(sweep.sweep_dir, [spec.run_id for spec in chosen])  # retried: a new exit 78 holds them again
                jobs = [RunJob(spec, sweep.run_dir(spec.run_id), threads=threads if cluster == "local" else None) for spec in chosen]
                with environment_variables(**env):
                    job = ex.submit(jobs[0] if len(jobs) == 1 else RunChain(jobs))
                for spec in chosen:
                    ledger.record_submission(records, spec.run_id, job.job_id, cluster, job.paths.stdout, job.paths.stderr)
                ledger.write(sweep.sweep_dir, records)
            chains[job.job_id] = [spec.run_id for spec in chosen]
            for spec in chosen:
                link_run_logs(sweep, spec.run_id, job.paths.stdout, job.paths.stderr)
                if not watch.tty:  # on a terminal the progress line says it; the log names every start
                    watch.note(f"{spec.run_id}: started ({cluster} job {job.job_id}); log {job.paths.stdout}")
                running[spec.run_id] = job
            if cluster == "debug":
                try:
                    job.result()  # runs it here, now (pdb post-mortem on an exception, as submitit's debug executor does)
                except (Exception, SystemExit):  # a run refused by its node (78) or locked (75): reported below
                    pass
        for run_id, job in list(running.items()):
            is_done = (sweep.run_dir(run_id) / "DONE").exists()
            if cluster == "debug" or is_done or job.done():
                del running[run_id]
                if is_done or (sweep.run_dir(run_id) / "DONE").exists():
                    if not watch.tty:
                        watch.note(f"{run_id}: DONE")
                else:
                    failed.append(run_id)
                    watch.note(f"{run_id}: ended without DONE; see {job.paths.stderr}")
        for run_id in list(others):
            records = ledger.read(sweep.sweep_dir)
            if run_id not in records or not scheduler.states({run_id: records[run_id]})[run_id].active:
                others.remove(run_id)
                if not (sweep.run_dir(run_id) / "DONE").exists():
                    failed.append(run_id)
        now_running = [next(r for r in runs if r in running) for runs in chains.values() if any(r in running for r in runs)]
        watch.update(now_running + others, failed)
        if queue or running or others:
            time.sleep(poll_s)
    watch.update([], failed)
    watch.close()
    return failed
