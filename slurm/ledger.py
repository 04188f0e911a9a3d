"""jobs.json: which job last ran each run of a sweep, and the lock that makes submission idempotent.

`<sweep_dir>/jobs.json` maps run_id -> record (last job id, cluster, submit time, submissions, log
paths, every job id so far). It is replaced atomically; it is read and written only while holding
an exclusive `fcntl.flock` on `<sweep_dir>/.jobs.lock`, so two `make sweep` at once cannot both
decide that a run needs a job. The sweep's report job (slurm.report_job) is kept under the key
`@report` (no run id starts with '@'): {job_id, depends_on, submitted_at, log_out, report}.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from al_core.io import atomic_write_json

JOBS_FILE = "jobs.json"
LOCK_FILE = ".jobs.lock"
REPORT_KEY = "@report"  # the report job's record; never a run id


def jobs_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / JOBS_FILE


def read(sweep_dir: Path) -> dict[str, dict]:
    """The records of a sweep; a missing file is no records. A damaged file is set aside, not trusted."""
    path = jobs_path(sweep_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        print(f"warning: {path} is unreadable ({e}); treating every run as never submitted", file=sys.stderr, flush=True)
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("job_id") and k != REPORT_KEY}


def read_report(sweep_dir: Path) -> dict | None:
    """The record of the sweep's latest report job, or None."""
    try:
        data = json.loads(jobs_path(sweep_dir).read_text())
    except (OSError, ValueError):
        return None
    rec = data.get(REPORT_KEY) if isinstance(data, dict) else None
    return rec if isinstance(rec, dict) and rec.get("job_id") else None


def write(sweep_dir: Path, records: dict[str, dict], report: dict | None = None) -> None:
    """Replace jobs.json with `records`; the report job's record is kept (or replaced by `report`)."""
    data = {k: v for k, v in sorted(records.items()) if k != REPORT_KEY}
    report = report if report is not None else read_report(sweep_dir)
    if report is not None:
        data[REPORT_KEY] = report
    atomic_write_json(jobs_path(sweep_dir), data)


def record_submission(
    records: dict[str, dict],
    run_id: str,
    job_id: str,
    cluster: str,
    log_out: Path,
    log_err: Path,
    submitted_at: str | None = None,
) -> dict:
    """Update `records` in place for a new job of `run_id`; returns the run's record."""
    old = records.get(run_id, {})
    job_ids = list(old.get("job_ids", []))
    job_ids.append(job_id)
    rec = {
        "job_id": job_id,
        "cluster": cluster,
        "submitted_at": submitted_at or now_iso(),
        "submissions": len(job_ids),  # 1 + how often `make sweep` resubmitted this run
        "job_ids": job_ids,
        "log_out": str(log_out),
        "log_err": str(log_err),
    }
    records[run_id] = rec
    return rec


@contextlib.contextmanager
def locked(sweep_dir: Path, wait_note: bool = True) -> Iterator[None]:
    """Hold the sweep's submission lock (blocking; says so when another `make sweep` holds it)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_note:
                print(f"waiting for another submission of this sweep to finish (lock {sweep_dir / LOCK_FILE})", flush=True)
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            if wait_note:
                print(f"lock acquired after {time.monotonic() - t0:.1f}s", flush=True)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
