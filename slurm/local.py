"""Running a sweep's runs on this machine: `--cluster local` (child processes, never more runs x
threads than cores; the throttle lives in this process, so it always waits) or `--cluster debug`
(submitit's debug executor: in this process, one run after another, for a debugger).
"""

from __future__ import annotations

import os
import time

import submitit
from submitit.core.utils import environment_variables

from al_core.config import Sweep
from slurm import held, ledger, scheduler
from slurm.plan import Plan
from slurm.profiles import Resources, source_tree
from slurm.submit import link_run_logs, new_log_folder
from slurm.watch import Watch


def local_parallelism(resources: Resources, n_runs: int) -> tuple[int, int]:
    """(runs at once, torch threads per run) for this machine: runs x threads <= cores."""
    cores = os.cpu_count() or 1
    parallel = max(1, min(cores, resources.array_parallelism, max(n_runs, 1)))
    return parallel, max(1, cores // parallel)


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
    debug = cluster == "debug"
    if debug:  # one run at a time in this process, with the process's own thread count
        ex: submitit.Executor = submitit.DebugExecutor(folder=folder)
        batches, slots, job_threads = [[s] for s in todo], 1, None
    else:
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=resources.max_timeouts)
        ex.update_parameters(timeout_min=resources.time_min, signal_delay_s=resources.signal_delay_s)
        watch.note(
            f"local: at most {parallel} runs at once, {threads} torch thread{'s' if threads > 1 else ''} each "
            f"({os.cpu_count()} cores); logs in {folder}"
        )
        # Round robin: each slot gets the grid's mix.
        batches, slots, job_threads = [todo[i::parallel] for i in range(parallel)], parallel, threads
    running: dict[str, submitit.Job] = {}
    chains: dict[str, list[str]] = {}  # job id -> its runs in order (the first not DONE is the one running)
    failed: list[str] = []
    # The job processes import al_core and slurm from this repository, and share the cores.
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (source_tree(), os.environ.get("PYTHONPATH", "")) if p),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    queue = [b for b in batches if b]
    while queue or running or others:
        while queue and len({j.job_id for j in running.values()}) < slots:
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
                jobs = [RunJob(spec, sweep.run_dir(spec.run_id), threads=job_threads) for spec in chosen]
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
            if debug:
                try:
                    job.result()  # runs it here, now (pdb post-mortem on an exception, as submitit's debug executor does)
                except (Exception, SystemExit):  # a run refused by its node (78) or locked (75): reported below
                    pass
        for run_id, job in list(running.items()):
            is_done = (sweep.run_dir(run_id) / "DONE").exists()
            if debug or is_done or job.done():  # a debug job ran in result(); done() would run it again
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
