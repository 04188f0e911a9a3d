"""One run directory, one writer: an exclusive lock held for the whole run.

Two processes on the same run directory (a double launch, or a requeued job whose old copy is
still dying on a lost node) would both train and both write rows. The first takes an exclusive lock on
`<run_dir>/.lock` (flock: owned by the open file, so reading the file elsewhere in the process
never drops it; Linux NFS clients map it onto NFS byte-range locks, which other nodes see) and
writes its host, pid and job id into the file; the kernel releases the lock when the holder exits or dies, SIGKILL
included, so a stale lock file never blocks anyone. A second process reads who holds it, writes
nothing, and raises RunLocked (exit 75: try again later).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live process holds this run directory."""


def slurm_job_id() -> str | None:
    """This process's SLURM job as `array_task` ("12_3") or plain ("12"); None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def holder(run_dir: Path) -> dict:
    """What the lock file says about its holder (empty if unreadable)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_NAME).read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class RunDirLock:
    """`acquire()` or raise RunLocked; `release()` (also on process exit, by the kernel)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunDirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            h = holder(self.path.parent)
            who = ", ".join(f"{k} {h[k]}" for k in ("host", "pid", "job") if h.get(k)) or "another process"
            raise RunLocked(f"{self.path.parent} is in use by {who} (since {h.get('since', '?')}); "
                            "this process writes nothing: run it again once that one has ended") from None
        from datetime import datetime, timezone

        info = {"host": socket.gethostname(), "pid": os.getpid(), "job": slurm_job_id(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
