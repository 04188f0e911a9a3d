"""jobs.json: which job last ran each run of a sweep, and the lock that makes submission idempotent.

`<sweep_dir>/jobs.json` maps run_id -> record (last job id, cluster, submit time, submissions, log
paths, every job id so far). It is replaced atomically; it is read and written only while holding
an exclusive lock on `<sweep_dir>/.jobs.lock` (al_core.locks), so two `make sweep` at once cannot both
decide that a run needs a job. The sweep's report job (slurm.report_job) is kept under the key
`@report` (no run id starts with '@'): {job_id, depends_on, submitted_at, log_out, report}.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from al_core import locks
from al_core.io import atomic_write_bytes

JOBS_FILE = "jobs.json"
LOCK_FILE = ".jobs.lock"
SUBMITTED_FILE = "submitted.json"  # per submission folder: which runs each job of an array runs
JOBS_MAX_BYTES = 1 << 30  # read at most: 1,000 runs take about 0.3 MB
SUBMITTED_MAX_BYTES = 64 * 2**20  # an array of 1,001 tasks of several runs takes well under 1 MB
REPORT_KEY = "@report"  # the report job's record; never a run id


def jobs_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / JOBS_FILE


def _load(sweep_dir: Path) -> tuple[dict, str]:
    """jobs.json's object and "", or {} and what is wrong: missing, unreadable (why), not a JSON object."""
    try:
        data = json.loads(locks.read_regular_file(jobs_path(sweep_dir), JOBS_MAX_BYTES))  # a FIFO or link: unreadable
    except FileNotFoundError:
        return {}, "missing"
    except (OSError, ValueError) as e:
        return {}, f"unreadable ({e})"
    return (data, "") if isinstance(data, dict) else ({}, "not a JSON object")


def read(sweep_dir: Path) -> dict[str, dict]:
    """The records of a sweep; a missing file is no records. A damaged file is set aside, not trusted."""
    data, problem = _load(sweep_dir)
    if problem.startswith("unreadable"):
        print(f"warning: {jobs_path(sweep_dir)} is {problem}; treating every run as never submitted", file=sys.stderr, flush=True)
    return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("job_id") and k != REPORT_KEY}


def recover(sweep_dir: Path, job_name: str, save: bool = True, note=None) -> dict[str, dict]:
    """The records of a sweep, rebuilt from the scheduler when jobs.json is missing or unreadable
    while the sweep has submitted before (a submission record under <sweep_dir>/logs/).

    Every job of the sweep's name that squeue still holds is matched to its runs through the
    submission record (`<log folder>/submitted.json`, written at submission: plain JSON, so
    nothing read here can run code; submitit's pickles are never opened), so a re-sweep never
    submits a run the scheduler still holds. Runs whose jobs have left the queue get no record:
    their DONE files, or their absence, decide. With `save`, a damaged file is set aside
    (jobs.json.damaged-<time>) and the rebuilt ledger written atomically. Raises
    scheduler.SchedulerError when squeue cannot be asked: nothing may be submitted on a guess.
    """
    from slurm import scheduler

    note = note or (lambda s: print(s, file=sys.stderr, flush=True))
    path = jobs_path(sweep_dir)
    problem = _load(sweep_dir)[1]
    if not problem:
        return read(sweep_dir)
    known, unreadable = submitted_jobs(sweep_dir)
    if not known and not unreadable and not any(Path(sweep_dir).glob("logs/*/*_submitted.pkl")):
        return {}  # never submitted to a scheduler: nothing to rebuild
    records: dict[str, dict] = {}
    for job_id in scheduler.active_jobs(job_name):
        for run_id, (out, err) in _runs_of(job_id, known, unreadable).items():
            rec = record_submission(records, run_id, job_id, "slurm", Path(out), Path(err))
            rec["rebuilt"] = now_iso()
    note(
        f"warning: {path} is {problem}; rebuilt {len(records)} record(s) from the scheduler (the runs it still holds)"
        + ("" if save else "; run `make sweep` to save them")
    )
    if save:
        if path.exists():
            os.replace(path, path.with_name(f"{JOBS_FILE}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}"))
        write(sweep_dir, records)
    return records


def _runs_of(job_id: str, known: dict[str, dict], unreadable: list[Path]) -> dict[str, tuple[str, str]]:
    """The runs a job still held by the scheduler runs ({run_id: (stdout log, stderr log)}), from
    the submission records; SchedulerError when that cannot be told (then no run may be submitted)."""
    from slurm import scheduler

    if job_id in known:
        return known[job_id]
    why = "is in no submission record under the sweep's logs/"
    if unreadable:
        why += f" (unreadable record {unreadable[0]})"
    raise scheduler.SchedulerError(
        f"job {job_id} of this sweep is still queued or running but {why}: cannot tell which runs it holds; "
        f"wait for it to end or cancel it (scancel {job_id.split('_')[0]}), then run `make sweep` again"
    )


def record_array(folder: Path, runs: list[tuple[str, str, Path, Path]]) -> None:
    """`<folder>/submitted.json`, atomically, once sbatch has accepted an array: which runs each of
    its jobs runs and where their logs go ({"jobs": {job_id: {run_id: [stdout, stderr]}}}). What a
    lost jobs.json is rebuilt from (`recover`)."""
    jobs: dict[str, dict[str, list[str]]] = {}
    for run_id, job_id, out, err in runs:
        jobs.setdefault(job_id, {})[run_id] = [str(out), str(err)]
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Not fsynced (one per array of a large sweep): the rename survives the process; a record lost
    # with the machine makes a rebuild refuse in one line, never guess.
    atomic_write_bytes(Path(folder) / SUBMITTED_FILE, json.dumps({"jobs": jobs}, indent=1).encode(), durable=False)


def submitted_jobs(sweep_dir: Path) -> tuple[dict[str, dict[str, tuple[str, str]]], list[Path]]:
    """Every submission record of a sweep merged ({job_id: {run_id: (stdout, stderr)}}), and the
    records that could not be read (not JSON, or not of that shape): JSON only, never code."""
    known: dict[str, dict[str, tuple[str, str]]] = {}
    unreadable: list[Path] = []
    for path in sorted(Path(sweep_dir).glob(f"logs/*/{SUBMITTED_FILE}")):
        try:
            jobs = json.loads(locks.read_regular_file(path, SUBMITTED_MAX_BYTES))["jobs"]
            parsed = {str(j): {str(r): (str(logs[0]), str(logs[1])) for r, logs in runs.items()} for j, runs in jobs.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            unreadable.append(path)
            continue
        known.update(parsed)  # sorted by folder name (its time): a later submission of a job id wins
    return known, unreadable


def read_report(sweep_dir: Path) -> dict | None:
    """The record of the sweep's latest report job, or None."""
    rec = _load(sweep_dir)[0].get(REPORT_KEY)
    return rec if isinstance(rec, dict) and rec.get("job_id") else None


def write(sweep_dir: Path, records: dict[str, dict], report: dict | None = None, durable: bool = True) -> None:
    """Replace jobs.json with `records` (one line per run, sorted by run id); the report job's
    record is kept (or replaced by `report`). Written after every array a sweep submits, so it is
    encoded by json's C encoder, not its pretty-printer (1,000 runs in 125 arrays spent 10 s
    there). `durable=False`: renamed into place without waiting for the disk (fsync): it survives
    the process, not a crash of the machine."""
    data = {k: v for k, v in sorted(records.items()) if k != REPORT_KEY}
    report = report if report is not None else read_report(sweep_dir)
    if report is not None:
        data[REPORT_KEY] = report
    atomic_write_bytes(jobs_path(sweep_dir), dumps(data).encode(), durable=durable)


def dumps(records: dict[str, dict]) -> str:
    """The text of jobs.json: a JSON object with one record per line, in the order given."""
    lines = [_line(run_id, rec) for run_id, rec in records.items()]
    return "{\n" + ",\n".join(lines) + ("\n" if lines else "") + "}\n"


_LINES: dict[str, tuple[dict, str]] = {}  # run_id -> (a copy of the record, its line) as last encoded


def _line(run_id: str, rec: dict) -> str:
    """A record's line of jobs.json, encoded again only when the record changed since the last
    write (a sweep writes the file after every array: unchanged records are most of it)."""
    cached = _LINES.get(run_id)
    if cached is not None and cached[0] == rec:
        return cached[1]
    line = f"  {json.dumps(run_id)}: {json.dumps(rec)}"
    _LINES[run_id] = (copy.deepcopy(rec), line)  # a copy: a record changed in place is seen as changed
    return line


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
    job_ids = [*records.get(run_id, {}).get("job_ids", []), job_id]
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
    """Hold the sweep's submission lock (blocking; says so when another `make sweep` holds it).
    Taken, or refused with LockError, as al_core.locks says; AL_LOCK=none: no lock."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if locks.lock_mode() == "none":
        yield
        return
    t0 = time.monotonic()
    waited = []

    def note() -> None:
        waited.append(True)
        if wait_note:
            print(f"waiting for another submission of this sweep to finish (lock {sweep_dir / LOCK_FILE})", flush=True)

    fd = locks.acquire(sweep_dir / LOCK_FILE, blocking=True, on_wait=note, mode=0o666)  # a group's umask may share it
    try:
        if waited and wait_note:
            print(f"lock acquired after {time.monotonic() - t0:.1f}s", flush=True)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
