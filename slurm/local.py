"""Running a sweep's runs on this machine (slurm.backend's interface): `--cluster local` (`LocalBackend`:
child processes, never more runs x threads than cores; this process waits for them) or `--cluster
debug` (`DebugBackend`: submitit's debug executor, in this process, one task after another).

Local: one process per core slot, each running its share of the tasks one after the other
(`RunChain`): the interpreter starts and torch is imported once per slot, not once per run (about
4 CPU-seconds each on a 2-core VM). The K runs of a task (slurm.runs_per_task) share their slot as
on SLURM: side by side (slurm.pack), slot threads / K each. The slots start under the sweep's lock.
"""

from __future__ import annotations

import os

import submitit
from submitit.core.utils import environment_variables

from slurm import held, ledger, report_job, scheduler
from slurm.backend import Backend, Submitted, link_run_logs, new_log_folder, record_task
from slurm.plan import Decision, Plan
from slurm.profiles import source_tree


class LocalBackend(Backend):
    """Child processes on this machine (submitit's LocalExecutor), one per core slot."""

    cluster = "local"
    runs_here = True
    poll_s = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.k = self.resources.runs_per_task
        self.chains: list[list[list[Decision]]] = []  # per job started: its tasks, in the order they run
        self.jobs: list[submitit.Job] = []
        self.ended: set[str] = set()  # runs whose end was noted

    def layout(self, n_tasks: int) -> tuple[int, int | None]:
        """(jobs, torch threads per job): one job per core slot, jobs x threads <= cores (runs x threads, K <= cores)."""
        cores = os.cpu_count() or 1
        parallel = max(1, min(cores // self.k, self.resources.array_parallelism, max(n_tasks, 1)))
        return parallel, max(1, cores // parallel)

    def at_once(self, n_tasks: int) -> int:
        return self.layout(n_tasks)[0]

    def dry_run(self, plan: Plan) -> list[str]:
        slots, threads = self.layout(len(plan.tasks(self.k)))
        return [f"local: no sbatch script; at most {slots * self.k} runs at once, {max(1, threads // self.k)} torch threads each"]

    def executor(self, folder) -> submitit.Executor:
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=self.resources.max_timeouts)
        ex.update_parameters(timeout_min=self.resources.time_min, signal_delay_s=self.resources.signal_delay_s)
        return ex

    def task_job(self, task: list[Decision], threads: int | None):
        """One task's callable: its run, or its K runs side by side (slurm.pack) sharing the slot's threads."""
        from slurm.job import RunJob
        from slurm.pack import PackJob

        runs = [RunJob(d.spec, self.sweep.run_dir(d.run_id), threads=threads) for d in task]
        return runs[0] if self.k == 1 else PackJob(runs, self.resources.gpu_mem_per_run, cpus=threads)

    def submit(self, plan: Plan, records: dict[str, dict]) -> Submitted:
        from slurm.job import RunChain

        tasks = plan.tasks(self.k)
        slots, threads = self.layout(len(tasks))
        folder = new_log_folder(self.sweep)
        ex, submitted = self.executor(folder), []
        if tasks and threads:
            shape = f"at most {slots * self.k} runs at once, {max(1, threads // self.k)} torch thread(s) each"
            print(f"local: {shape} ({os.cpu_count()} cores); logs in {folder}", flush=True)
        # The job processes import al_core and slurm from this repository, and share the cores.
        path = os.pathsep.join(p for p in (source_tree(), os.environ.get("PYTHONPATH", "")) if p)
        env = {"PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
        held.release(self.sweep.sweep_dir, [d.run_id for d in plan.to_submit])  # retried: a new exit 78 holds them again
        for chain in (tasks[i::slots] for i in range(slots) if tasks[i::slots]):  # round robin: each slot gets the grid's mix
            jobs = [self.task_job(task, threads) for task in chain]
            with environment_variables(**env):
                job = ex.submit(jobs[0] if len(jobs) == 1 else RunChain(jobs))
            for d, job_id, out, err in (
                r for t in chain for r in record_task(self.sweep, records, t, job, self.cluster, self.packed)
            ):
                link_run_logs(self.sweep, d.run_id, out, err)
                print(f"{d.run_id}: started ({self.cluster} job {job_id}); log {out}", flush=True)
                submitted.append((d, job_id))
            self.chains.append(chain)
            self.jobs.append(job)
        ledger.write(self.sweep.sweep_dir, records)
        return submitted

    packed = property(lambda self: self.k > 1)  # each run of a task has its own log (slurm.pack), as on SLURM

    def announce(self, submitted: Submitted, command: str, wait: bool) -> list[str]:
        return [] if wait else [f"{self.cluster}: runs in the foreground (as with --wait); Ctrl-C stops them after a checkpoint"]

    def poll(self, run_ids: list[str]) -> tuple[list[str], list[str], bool]:
        """A run is live while its job's process lives (jobs.json); a job's chain runs its first task not DONE."""
        for job in self.jobs:
            job.done()  # reaps a finished job's process
        records = ledger.read(self.sweep.sweep_dir)
        states = scheduler.states({r: records[r] for r in run_ids if r in records})
        mine = {d.run_id for chain in self.chains for task in chain for d in task}
        now = {d.run_id for c in self.chains for d in next((t for t in c if not all(self.done(d.run_id) for d in t)), [])}
        live = [r for r in run_ids if not self.done(r) and states.get(r, scheduler.UNKNOWN).active]
        failed = [r for r in run_ids if not self.done(r) and r not in live]
        for r in (r for r in run_ids if r not in self.ended and r not in live):
            self.ended.add(r)
            if r in failed:
                self.watch.note(f"{r}: ended without DONE; see {records.get(r, {}).get('log_err')}")
            elif not self.watch.tty:
                self.watch.note(f"{r}: DONE")
        return [r for r in live if r in now or r not in mine], failed, not live

    def after_wait(self, sweep_path: str, overrides: list[str]) -> None:
        if self.resources.report_job:  # as `make demo`: the report of whatever the runs wrote, finished or not
            report_job.run_locally(sweep_path, overrides)


class DebugBackend(LocalBackend):
    """In this process (submitit's DebugExecutor), one task after another, with this process's threads."""

    cluster = "debug"
    packed = False  # the runs of a task run one after the other, logged in the task's log

    def layout(self, n_tasks: int) -> tuple[int, None]:
        return max(n_tasks, 1), None  # one job per task

    def dry_run(self, plan: Plan) -> list[str]:
        return ["debug: no sbatch script; one run at a time, in this process, with its torch threads"]

    def executor(self, folder) -> submitit.Executor:
        return submitit.DebugExecutor(folder=folder)

    def task_job(self, task: list[Decision], threads: None):
        from slurm.job import RunChain, RunJob

        runs = [RunJob(d.spec, self.sweep.run_dir(d.run_id)) for d in task]
        return runs[0] if len(runs) == 1 else RunChain(runs)

    def wait(self, run_ids: list[str]) -> list[str]:
        for job in self.jobs:
            try:
                job.result()  # runs it here, now (pdb post-mortem on an exception, as submitit's debug executor does)
            except (Exception, SystemExit):  # a run refused by its node (78) or locked (75): reported below
                pass
        self.jobs = []  # ran: done() would run a debug job again
        return super().wait(run_ids)
