"""The job callable: one run under submitit, resumable from its run directory whatever stops it.

The run's state lives on disk (al_core checkpoints and cycles.jsonl), not in the pickle, so
`checkpoint()` resubmits the very same callable and the job resumes where the run stands. How each
interruption reaches the run (al_core.loop checks a StopFlag after every training step, writes a
checkpoint and raises Interrupted):

| interruption | signal | what happens here |
| --- | --- | --- |
| time limit near (`--signal=USR2@delay`), preemption with `preempt_send_user_signal` | USR2 | the flag is set; after the checkpoint, submitit's own USR2 handler runs: `checkpoint()` -> the same job is requeued (`scontrol requeue`), up to `max_timeouts` time-outs |
| `scontrol requeue`, preemption without the user signal, node going down, `scancel` | SIGTERM (SIGKILL after KillWait) | the flag is set; after the checkpoint the process exits with 75; SLURM requeues the job itself (`--requeue`) or it stays CANCELLED |
| local executor cancel, Ctrl-C | SIGINT | as SIGTERM |

A requeued job runs this callable again; the run resumes from its newest checkpoint, so an
interruption loses at most the current training step. When the run finishes, submitit records
("success", "done") for the job, however often it was requeued.

Exit status of the job process: 0 done (submitit's result pickle says success); 78 (EX_CONFIG) this
node cannot serve the run (no usable GPU though one was asked for, no kernels for the GPU in this
build, a precision the GPU lacks, the dataset missing): one `error:` line on stderr, the run is
held (slurm.held) and its directory untouched; 75 (EX_TEMPFAIL)
stopped by SIGTERM/SIGINT after writing a checkpoint; 255 (-1) requeued by submitit after USR2;
1 the run failed (the traceback is in the job's .err log and in submitit's result pickle).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import sys
import traceback
from datetime import datetime
from pathlib import Path

import submitit
from submitit.core.job_environment import JobEnvironment, SignalHandler

from al_core.cli import EXIT_IO, io_error_line, setup_logging
from al_core.config import RunSpec
from al_core.results import EXIT_INTERRUPTED, EXIT_NODE
from slurm import held, scheduler

# al_core.loop (torch, scikit-learn) is imported inside __call__, after the signal handlers are in
# place: unpickling this job must be quick, because until submitit has installed its handlers a
# USR2 would kill the process instead of requeueing it.
STOP_SIGNALS = ("SIGTERM", "SIGINT")  # plus submitit's user signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)


def log(message: str) -> None:
    """One line per event, flushed: `tail -f` on the job's log shows progress as it happens."""
    print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {message}", flush=True)


def is_submitit_handler(handler) -> bool:
    """True for the USR2 handler submitit's job runner installs (checkpoint and requeue)."""
    return isinstance(getattr(handler, "__self__", None), SignalHandler)


def ignore_late_signal(usr_sig: signal.Signals, what: str, replacing=None) -> bool:
    """Once `what` has finished and its result stands, the time-limit warning (USR2) must not reach
    submitit's handler: arriving while the process exits (the interpreter's shutdown takes a
    second or two), it would requeue a finished job, which then waits up to a scheduler pass to
    start, finds DONE and ends; meanwhile the job reads PENDING, and accounting shows one requeue
    more than the run had. Log it and let the process end. Only under submitit's job runner: a
    debug run in the caller's process keeps the caller's handler. `replacing`: the handler that
    would be restored (default: the one in place). Returns whether it took USR2 over.
    """
    if not is_submitit_handler(signal.getsignal(usr_sig) if replacing is None else replacing):
        return False

    def late(signum, frame):
        log(f"{signal.Signals(signum).name} after {what} finished: nothing to checkpoint, the job is not requeued")

    signal.signal(usr_sig, late)
    return True


@contextlib.contextmanager
def routed(handler, names: tuple[str, ...], what: str, last: bool):
    """Route submitit's user signal and `names` to `handler` inside the block, then restore them.
    Set `finished[0]` once `what` has finished: with `last` (nothing follows in this process) a USR2
    from then on goes straight from `handler` to `ignore_late_signal`'s, never to submitit's."""
    usr_sig = JobEnvironment._usr_sig()
    watched = [usr_sig] + [getattr(signal, name) for name in names]
    previous = {sig: signal.getsignal(sig) for sig in watched}
    for sig in watched:
        signal.signal(sig, handler)
    finished = [False]
    try:
        yield finished
    finally:
        late = finished[0] and last and ignore_late_signal(usr_sig, what, previous[usr_sig])
        for sig, old in previous.items():
            if not (late and sig == usr_sig):
                signal.signal(sig, old)


def allocated_cpus() -> int | None:
    """The cores SLURM gave this job (cpus-per-task, else the cores on this node), or None outside SLURM."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def take_over_stale_lock(run_dir: Path, log=log) -> bool:
    """Set aside the lock of `run_dir` when its holder is a job on another host that the scheduler
    says is no longer running (a node that died leaves its lock on a shared file system), or this
    very job's previous start on another host (SLURM requeued it off a dead node) when the
    scheduler says that node is down or not responding, or has booted since the lock was taken: a
    requeued job's old copy may still be running on a node that lost contact. A job the scheduler
    does not know (purged, or run by another cluster on the same file system) needs the same word
    about its node. A lock held by a live job, or one the scheduler cannot be asked about, is left
    alone: the run then exits 75.
    Returns whether the lock was taken over."""
    from al_core.locks import LockError
    from al_core.rundir import RunDirLock, holder, slurm_job_id

    lock, h = RunDirLock(run_dir), holder(run_dir)
    job, host = h.get("job"), h.get("host")
    try:
        if not job or not host or host == socket.gethostname() or not lock.held():
            return False  # a holder on this host is alive while its lock is held: the kernel frees a dead one's
    except LockError:
        return False  # the run's own acquire says what is wrong with the lock, in one line
    try:
        why = _holder_gone(str(job), str(host), str(h.get("since", "")), slurm_job_id())
    except scheduler.SchedulerError:
        return False
    if why is None:
        return False
    aside = lock.set_aside()
    log(f"took over the lock of {run_dir} held by job {job} on {host}: {why}; old lock kept as {aside.name}")
    return True


def _holder_gone(job: str, host: str, since: str, me: str | None) -> str | None:
    """Why the scheduler says the lock's holder (`job` on `host` since `since`) is gone, or None."""
    if job == me:
        gone = scheduler.node_gone(host, since)
        return f"this job's previous start there (requeued off that node; {gone})" if gone else None
    state = scheduler.slurm_states([job], since_iso=since).get(job)
    if state is None:  # a job this scheduler does not know (purged, or another cluster's): ask about its node
        gone = scheduler.node_gone(host, since)
        return f"the scheduler does not know that job and says {gone}" if gone else None
    return None if state.active else f"the scheduler says that job is {state.state}"


class RunJob(submitit.helpers.Checkpointable):
    """`RunJob(spec, run_dir)()` runs or resumes one run; submitit pickles it as the job.

    Example
    -------
    >>> job = RunJob(sweep.run("resnet18-sgd-random-t0"), sweep.run_dir("resnet18-sgd-random-t0"))  # doctest: +SKIP
    >>> executor.submit(job)  # doctest: +SKIP
    """

    def __init__(self, spec: RunSpec, run_dir: str | os.PathLike, threads: int | None = None) -> None:
        self.spec = spec
        self.run_dir = str(Path(run_dir).resolve())
        self.threads = threads  # torch threads; None: AL_THREADS, else the cores SLURM allocated
        self.requeues = 0  # checkpoint() calls seen by this pickle (time limits and preemptions)
        self.refused = False  # the last call exited because the node could not serve the run (78) or it was locked (75)

    @property
    def run_ids(self) -> list[str]:
        return [self.spec.run_id]

    def __call__(self) -> str:
        return self.call(last=True)

    def call(self, last: bool) -> str:
        """Run or resume the run. `last`: nothing follows in this process, so a USR2 after the run
        finished is ignored (`ignore_late_signal`); a chain passes False and decides itself."""
        setup_logging()  # the library's warnings reach the job's log
        usr_sig = JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)  # installed by submitit before it calls us
        requested: list[str] = []  # signals that arrive before the run's StopFlag exists

        def request_stop(signum, frame):  # keep it tiny: it runs between two bytecodes of the loop
            requested.append(signal.Signals(signum).name)
            if stop is not None:
                stop.request(requested[0])

        stop = None
        with routed(request_stop, STOP_SIGNALS, f"run {self.spec.run_id}", last) as finished:
            from al_core.train import StopFlag

            stop = StopFlag()
            if requested:  # a signal came during the imports
                stop.request(requested[0])
            result = self._run(stop, usr_sig, submitit_handler)
            finished[0] = True
        return result

    def _run(self, stop, usr_sig: signal.Signals, submitit_handler) -> str:
        """The run itself, and how each way it can stop ends this process (see the module's docstring)."""
        import torch

        from al_core.errors import DataMissing, NodeError
        from al_core.loop import run
        from al_core.train import Interrupted
        from al_core.run import configure_threads
        from al_core.rundir import RunLocked

        configure_threads(self.threads)  # the share given, else AL_THREADS, else the SLURM allocation
        log(
            f"{self.spec.run_id}: job {_job_id()} on {socket.gethostname()}, run dir {self.run_dir}, "
            f"{torch.get_num_threads()} torch threads"
        )
        take_over_stale_lock(Path(self.run_dir), log)
        try:
            return run(self.spec, Path(self.run_dir), stop=stop, log=log)
        except (NodeError, DataMissing) as e:
            # This node cannot serve the run: say so once, hold the run, leave its directory alone.
            print(f"error: {self.spec.run_id}: {e}", file=sys.stderr, flush=True)
            held.hold(Path(self.run_dir).parent.parent, self.spec.run_id, str(e))
            log(
                f"{self.spec.run_id}: exiting with {EXIT_NODE} (this node cannot serve the run); "
                "`make sweep` holds it until you fix the cause and pass --retry-failed"
            )
            self.refused = True
            sys.exit(EXIT_NODE)
        except RunLocked as e:
            print(f"error: {self.spec.run_id}: {e}", file=sys.stderr, flush=True)
            self.refused = True
            sys.exit(EXIT_INTERRUPTED)
        except OSError as e:  # a full disk or quota: one line; what was written before is intact
            print(f"error: {self.spec.run_id}: {io_error_line(e)}", file=sys.stderr, flush=True)
            sys.exit(EXIT_IO)
        except Interrupted as e:
            log(f"{self.spec.run_id}: {e}")
            if e.signame == usr_sig.name and is_submitit_handler(submitit_handler):
                # submitit decides: checkpoint() + `scontrol requeue` + exit, or UncompletedJobError
                # after too many time-outs (the job then FAILs and `make sweep` may resubmit it).
                submitit_handler(usr_sig, None)
            log(f"{self.spec.run_id}: exiting with {EXIT_INTERRUPTED}; the run resumes from its checkpoint when started again")
            sys.exit(EXIT_INTERRUPTED)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same run: its state is on disk in run_dir, nothing to add to the pickle."""
        self.requeues += 1
        log(
            f"{self.spec.run_id}: checkpoint(): requeueing (requeue {self.requeues} of this job); "
            f"the run resumes from {self.run_dir}"
        )
        return super().checkpoint(*args, **kwargs)


class RunChain(submitit.helpers.Checkpointable):
    """Several runs (`RunJob`s, or tasks of K runs: slurm.pack's `PackJob`s) one after the other in
    one job process (the local executor's core slots): one interpreter start and one torch import
    for all of them. A run interrupted by a signal ends the chain (exit 75, as `RunJob`); a requeue
    runs the same chain again, and the runs already DONE return at once.
    """

    def __init__(self, jobs: list[RunJob]) -> None:
        self.jobs = list(jobs)

    def __call__(self) -> list[str]:
        results, failed = [], []
        for job in self.jobs:  # a run that fails does not stop the others (its traceback goes to the .err log)
            job.refused = False
            try:
                results.append(job.call(last=False))
            except SystemExit:
                if not job.refused:  # an interruption (a signal) ends the chain; it resumes when started again
                    raise
                failed += job.run_ids  # refused by this node (held) or locked by another process
                results.append("refused")
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                failed += job.run_ids
                results.append("failed")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        log(f"chain of {len(self.jobs)} runs finished: {usage.ru_utime + usage.ru_stime:.1f} CPU-seconds in this process")
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(self.jobs)} runs failed: {', '.join(failed)}")
        ignore_late_signal(JobEnvironment._usr_sig(), f"the chain of {len(self.jobs)} runs")
        return results

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        log(f"checkpoint(): requeueing the chain of {len(self.jobs)} runs; each resumes from its run directory")
        return super().checkpoint(*args, **kwargs)


def _job_id() -> str:
    try:
        return submitit.JobEnvironment().job_id
    except Exception:  # not under submitit (a test calling the job directly)
        return "-"
