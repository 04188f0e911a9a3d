"""Several runs in one array task (`slurm.runs_per_task: K`): they share its CPUs and its one GPU.

A CIFAR ResNet at batch 128 leaves most of a 32-80 GiB GPU idle, and at the small labelled sets of
early cycles kernel launches and host work dominate: K runs side by side fill the GPU, for the
price of one task's allocation.

`PackJob([RunJob, ...])()` starts one child process per run (`python -m slurm.pack -`), each
the usual `RunJob` with its own run directory, checkpoints, rows and log
(`<sweep>/logs/packed/<run_id>.out|.err`, appended per attempt), and cpus / K torch threads. The
child reads its RunJob from its stdin, an anonymous pipe only this task's process writes: no file
another user could replace is ever unpickled.
Signals reach every child: USR2 (time limit, preemption) and SIGTERM make each one checkpoint
and stop; then the task is requeued as a whole (USR2: submitit's checkpoint(); SIGTERM: exit 75,
SLURM requeues), and runs that had finished return at once on the next start. A run that fails
does not stop its neighbours: the task ends FAILED naming it, its neighbours are DONE, and
`make sweep` resubmits only the failed run.

Exit status of the task: 0 every run DONE; 75 stopped by a signal after the children
checkpointed; 78 every run found the node unable to serve it (each is held); 1 some run failed.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import submitit
from submitit.core.job_environment import JobEnvironment

from al_core.cli import setup_logging
from al_core.results import EXIT_INTERRUPTED, EXIT_NODE
from slurm.job import STOP_SIGNALS, RunJob, allocated_cpus, is_submitit_handler, log, routed


def packed_logs(run_dir: str | os.PathLike, run_id: str) -> tuple[Path, Path]:
    """Where a packed run's own stdout and stderr go: `<sweep_dir>/logs/packed/<run_id>.out|.err`."""
    folder = Path(run_dir).resolve().parent.parent / "logs" / "packed"  # run_dir = <sweep_dir>/runs/<run_id>
    return folder / f"{run_id}.out", folder / f"{run_id}.err"


def mem_bytes(text: str) -> int:
    """'8G' -> bytes (K/M/G/T, plain number = MB, as sbatch --mem)."""
    text = str(text).strip().upper().rstrip("B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text) * 2**20)


class PackJob(submitit.helpers.Checkpointable):
    """K runs in one task. `gpu_mem_per_run`: what each run needs on the GPU (e.g. "6G"), checked
    against the device before any child starts; None skips the check. `cpus`: the cores the task
    shares out (local slots); None: SLURM's allocation, else this machine's."""

    def __init__(self, jobs: list[RunJob], gpu_mem_per_run: str | None = None, cpus: int | None = None) -> None:
        self.jobs = jobs
        self.gpu_mem_per_run = gpu_mem_per_run
        self.cpus = cpus
        self.requeues = 0
        self.refused = False  # the last call exited 78: no run of the task could be served by its node

    @property
    def run_ids(self) -> list[str]:
        return [j.spec.run_id for j in self.jobs]

    def _refuse_if_gpu_too_small(self) -> None:
        """When K runs x gpu_mem_per_run exceed the task's GPU: one `error:` line, every run held, exit 78."""
        if not self.gpu_mem_per_run:
            return
        import torch

        if not torch.cuda.is_available():
            return  # the children's preflight says what is wrong with the GPU
        total = torch.cuda.get_device_properties(0).total_memory
        need = mem_bytes(self.gpu_mem_per_run) * len(self.jobs)
        if need > total:
            from slurm import held

            e = (
                f"{len(self.jobs)} runs x slurm.gpu_mem_per_run {self.gpu_mem_per_run} = {need / 2**30:.1f} GiB "
                f"exceed the {torch.cuda.get_device_name(0)}'s {total / 2**30:.1f} GiB; lower "
                "slurm.runs_per_task or use a partition with larger GPUs"
            )
            print(f"error: {e}", file=sys.stderr, flush=True)
            for j in self.jobs:
                held.hold(Path(j.run_dir).parent.parent, j.spec.run_id, e)
            self.refused = True
            sys.exit(EXIT_NODE)

    def _start(self, children: list[subprocess.Popen], received: list[int]) -> None:
        """One child process per run (`python -m slurm.pack -`, its RunJob pickled into the child's
        stdin pipe, never into a file), each with cpus / K torch threads."""
        cpus = getattr(self, "cpus", None) or allocated_cpus() or os.cpu_count() or 1
        threads = max(1, cpus // len(self.jobs))
        log(f"task of {len(self.jobs)} runs ({', '.join(self.run_ids)}), {threads} torch threads each")
        for j in self.jobs:
            out, err = packed_logs(j.run_dir, j.spec.run_id)
            out.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            with open(out, "ab") as fo, open(err, "ab") as fe:
                child = subprocess.Popen(
                    [sys.executable, "-u", "-m", "slurm.pack", "-"], stdin=subprocess.PIPE, stdout=fo, stderr=fe, env=env
                )
            children.append(child)
            try:
                child.stdin.write(pickle.dumps(RunJob(j.spec, j.run_dir, threads=threads)))
                child.stdin.close()
            except BrokenPipeError:  # the child died at once: its exit status says so
                pass
            if received:  # a signal came while starting: the new child must hear it too
                child.send_signal(received[0])

    def _end(self, codes: list[int], received: list[int], usr_sig, submitit_handler) -> str:
        """The task's result from its children's exit statuses (see the module's docstring)."""
        summary = ", ".join(f"{r}: {c}" for r, c in zip(self.run_ids, codes))
        log(f"task ended: exit statuses {summary}")
        if all(c == 0 for c in codes):  # every run DONE, a signal during the last moments or not
            return "done"
        if usr_sig in received and is_submitit_handler(submitit_handler):
            submitit_handler(usr_sig, None)  # checkpoint() -> requeue the whole task
        if received:
            sys.exit(EXIT_INTERRUPTED)
        if all(c == EXIT_NODE for c in codes):
            self.refused = True
            sys.exit(EXIT_NODE)
        failed = [r for r, c in zip(self.run_ids, codes) if c != 0]
        raise RuntimeError(
            f"{len(failed)} of {len(codes)} runs of this task failed ({summary}); their logs: "
            + ", ".join(str(packed_logs(j.run_dir, j.spec.run_id)[1]) for j in self.jobs if j.spec.run_id in failed)
        )

    def __call__(self) -> str:
        return self.call(last=True)

    def call(self, last: bool) -> str:
        """Run the task. `last`: nothing follows in this process (a chain of tasks passes False)."""
        setup_logging()  # the library's warnings reach the job's log
        self.refused = False
        usr_sig = JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)
        received: list[int] = []
        children: list[subprocess.Popen] = []

        def forward(signum, frame):
            received.append(signum)
            for c in children:
                if c.poll() is None:
                    try:
                        c.send_signal(signum)
                    except OSError:
                        pass

        # The children hear what would stop a run: STOP_SIGNALS and submitit's user signal.
        with routed(forward, STOP_SIGNALS, f"the task of {len(self.jobs)} runs", last) as finished:
            self._refuse_if_gpu_too_small()
            self._start(children, received)
            codes = [c.wait() for c in children]
            result = self._end(codes, received, usr_sig, submitit_handler)
            finished[0] = True
        return result

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        self.requeues += 1
        log(f"checkpoint(): requeueing the task of {len(self.jobs)} runs (requeue {self.requeues})")
        return super().checkpoint(*args, **kwargs)


def child_main(source: str, stdin=None) -> int:
    """One packed run in its own process: the RunJob's usual handling of signals and failures.
    `source` must be "-": the RunJob comes through stdin, a pipe its parent task created and
    wrote (nothing on disk is unpickled: a file could be another user's)."""
    if source != "-":
        print(f"error: python -m slurm.pack {source}: expected `-` (the job comes through stdin)", file=sys.stderr)
        return 2
    job: RunJob = pickle.loads((stdin or sys.stdin.buffer).read())  # the parent's own bytes, through an anonymous pipe
    try:
        job()
    except SystemExit as e:
        return int(e.code or 0)
    except Exception:
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1] if len(sys.argv) > 1 else ""))
