"""The run directory: its files (run.json, cycles.jsonl, DONE) and one writer at a time.

One run directory, one writer: an exclusive lock held for the whole run.

Two processes on the same run directory (a double launch, or a requeued job whose old copy is
still dying on a lost node) would both train and both write rows. The first takes an exclusive lock on
`<run_dir>/.lock` (flock: owned by the open file, so reading the file elsewhere in the process
never drops it; Linux NFS clients map it onto NFS byte-range locks, which other nodes see) and
writes its host, pid and job id into the file; the kernel releases the lock when the holder exits or dies, SIGKILL
included, so a stale lock file never blocks anyone. A second process reads who holds it, writes
nothing, and raises RunLocked (exit 75: try again later). How the lock file is opened and
checked, and where the lock is refused (a file system without locks, or whose locks other nodes
do not see: LockError, exit 78), or not taken at all (AL_LOCK=none): al_core.locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

from al_core import locks, results
from al_core.config import config_diff
from al_core.errors import ConfigError
from al_core.io import atomic_write_json, read_jsonl

LOCK_NAME = results.LOCK


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
        data = json.loads(locks.read_regular_file(Path(run_dir) / LOCK_NAME, 4096) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class RunDirLock:
    """`acquire()` or raise RunLocked; `release()` (also on process exit, by the kernel). How the
    lock is taken and when it is refused (LockError): al_core.locks."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunDirLock":
        if locks.lock_mode() == "none":  # AL_LOCK=none: no lock, no holder line (README: Locks)
            return self
        fd = locks.acquire(self.path)
        if fd is None:
            h = holder(self.path.parent)
            who = ", ".join(f"{k} {h[k]}" for k in ("host", "pid", "job") if h.get(k)) or "another process"
            raise RunLocked(
                f"{self.path.parent} is in use by {who} (since {h.get('since', '?')}); "
                "this process writes nothing: run it again once that one has ended"
            )
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job": slurm_job_id(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def held(self) -> bool:
        """Whether some process holds the lock now (asked without taking it for long)."""
        return locks.lock_mode() != "none" and locks.probe(self.path)

    def set_aside(self) -> Path:
        """Move a lock whose holder is known to be gone (a job on a node that died, whose lock the
        shared file system still keeps) out of the way, atomically: the next `acquire()` locks a
        fresh file. The caller decides that the holder is gone; the old file stays for a person."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
        os.replace(self.path, aside)
        return aside

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


# ----------------------------------------------------------------------------------------------
# The run directory's files other than checkpoints: run.json, cycles.jsonl, DONE.
class RunDir:
    """The files of one run directory and the rules for reading them (torch-free: slurm.plan uses it).

    run.json records the config, its fingerprint and where the run executed; cycles.jsonl holds one
    row per finished cycle (the truth about what was labelled); DONE marks a finished run.
    """

    RESTART_FILES = (results.RUN_JSON, results.CYCLES, results.DONE)  # with epochs.jsonl, checkpoints and tune side files

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def rows_path(self) -> Path:
        return self.path / results.CYCLES

    @property
    def run_json(self) -> Path:
        return self.path / results.RUN_JSON

    @property
    def done(self) -> bool:
        return results.is_done(self.path)

    def stored_config(self, fix: str) -> dict | None:
        """The config run.json records (None: no run.json); ConfigError naming `fix` if it is unreadable."""

        if not self.run_json.exists():
            return None
        try:
            return json.loads(self.run_json.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.run_json}: unreadable run.json; expected this run's record ({fix})") from None

    def check_config(self, config: dict) -> None:
        """Raise ConfigError when run.json records another config than `config` (reads only)."""
        diff = self.config_diff(config, "pass --restart to start over")
        if diff:
            raise ConfigError(
                f"{self.path} holds a run with a different config (differs in {', '.join(diff)}); "
                "expected the same config, or pass --restart to discard it"
            )

    def config_diff(self, config: dict, fix: str) -> list[str]:
        """Dotted keys in which run.json's config differs from `config` (empty: same, or no run.json)."""
        stored = self.stored_config(fix)
        return [] if stored is None else config_diff(stored, config)

    def read_rows(self, run_id: str, cycles: int) -> list[dict]:
        """The finished cycles' rows, checked to be cycles 1..n of `run_id` (ConfigError otherwise)."""
        try:
            rows = read_jsonl(self.rows_path)
        except ValueError as e:
            raise ConfigError(f"{e}; expected rows written by this run (pass --restart to start over)") from None
        for i, r in enumerate(rows, 1):
            if r.get("run_id") != run_id or r.get("cycle") != i:
                raise ConfigError(f"{self.rows_path}: row {i} is not cycle {i} of {run_id}; pass --restart to start over")
        return rows[:cycles]

    def clear(self, tensorboard_dir: str, *files: str) -> None:
        """--restart: remove every file of the earlier run (rows, record, checkpoints, side files,
        curves, and `files`, e.g. the epoch log and the tracker's state)."""
        shutil.rmtree(self.path / tensorboard_dir, ignore_errors=True)
        for p in self.path.iterdir():
            if p.is_file() and (p.name in (*self.RESTART_FILES, *files) or p.name.startswith(("ckpt-", ".ckpt-", "tune-"))):
                p.unlink()

    def remove_stale_temps(self) -> None:
        """Temp files of writes that a kill cut short (only the lock holder may call this)."""
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def write_run_json(self, run_id: str, fingerprint: str, config: dict, axes: dict, provenance: dict) -> None:
        """run.json, atomically: the config and this start appended to the earlier starts and job ids."""
        try:
            old = json.loads(self.run_json.read_text())
        except (FileNotFoundError, ValueError):
            old = {}
        job = slurm_job_id()
        jobs = list(old.get("slurm_job_ids", []))
        if job and job not in jobs:
            jobs.append(job)
        starts = list(old.get("starts", [])) + [datetime.now(timezone.utc).isoformat(timespec="seconds")]
        record = {
            "run_id": run_id,
            "fingerprint": fingerprint,
            "config": config,
            "axes": axes,
            "provenance": {
                "git_commit": git_commit(),
                "python": platform.python_version(),
                "packages": versions(),
                "host": socket.gethostname(),
                **provenance,
            },
            "slurm_job_ids": jobs,
            "starts": starts,
            "restarts": len(starts) - 1,
        }
        atomic_write_json(self.run_json, record, point="run_json")

    def progress(self) -> tuple[int, float | None, int]:
        """(finished cycles, last test accuracy, restarts) for status polling: cached by file size and
        mtime, and counting lines instead of parsing every row, so a poll of a large sweep stays cheap."""
        return _progress_cached(self.path)


_PROGRESS: dict[Path, tuple[tuple, tuple[int, float | None, int]]] = {}


def _stat_key(path: Path) -> tuple:
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return (None, None)


def _progress_cached(run_dir: Path) -> tuple[int, float | None, int]:
    rows_path, record = run_dir / results.CYCLES, run_dir / results.RUN_JSON
    key = (_stat_key(rows_path), _stat_key(record))
    hit = _PROGRESS.get(run_dir)
    if hit is not None and hit[0] == key:
        return hit[1]
    cycles, acc, restarts = 0, None, 0
    try:
        blob = rows_path.read_bytes()
        lines = [ln for ln in blob.split(b"\n") if ln.strip()]
        cycles = len(lines)
        if lines:
            acc = json.loads(lines[-1]).get("test_accuracy")
    except (OSError, ValueError, AttributeError):
        pass  # absent, being replaced right now, or damaged: the run itself will say
    try:
        restarts = int(json.loads(record.read_text()).get("restarts", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    _PROGRESS[run_dir] = (key, (cycles, acc, restarts))
    return cycles, acc, restarts


def git_commit() -> str | None:
    """The project's commit where it runs from a clone (None in an installed package)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "torchvision", "numpy", "scikit-learn", "submitit"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
