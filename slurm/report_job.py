"""The report as a job: after a sweep's arrays, one small CPU job with `--dependency=afterany:` on
every array of the sweep still queued or running writes the report when the last run ends, finished or not.
Runs whose job was preempted or lost with its node are first submitted again (slurm.resubmit), with a
new report job after them.

A later `make sweep` that submits more arrays cancels the pending report job and submits one that
waits for all of them, so a sweep has one report job at a time. The job runs
`python -m analysis.report SWEEP [overrides]` (and `analysis.power` where that module exists) in the
directory `make sweep` ran in; the report lists the runs that never started or did not finish.
Its record is `@report` in jobs.json (slurm.ledger); `make status` shows its state and the report.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

from al_core.config import Sweep
from slurm import ledger, scheduler
from slurm.profiles import Resources, pythonpath_setup

REPORT_HTML = Path("report") / "report.html"


def job_name(sweep: Sweep) -> str:
    return f"al-{sweep.name}-report"


def report_path(sweep: Sweep) -> Path:
    return (sweep.sweep_dir / REPORT_HTML).resolve()


def commands(python: str, sweep_path: str, overrides: list[str]) -> list[str]:
    """First the runs preempted or lost with their node are submitted again (slurm.resubmit; exit 3:
    a new report job waits for them and this one stops); then the report, then the power table
    where this checkout has `analysis.power`, then a sequential study's look and next wave
    (slurm.waves: nothing for a study of fixed trials)."""
    args = shlex.join([str(Path(sweep_path).resolve()), *overrides])
    has_power = "import importlib.util, sys; sys.exit(importlib.util.find_spec('analysis.power') is None)"
    return [
        f"{python} -m slurm.resubmit {args}",
        "if [ $? -eq 3 ]; then exit 0; fi",
        f"{python} -m analysis.report {args}",
        "status=$?",
        f"if {python} -c {shlex.quote(has_power)} 2>/dev/null; then {python} -m analysis.power {args} || true; fi",
        "# a sequential study (analysis.sequential): the look at this wave, and the next wave if it is undecided",
        f"{python} -m slurm.waves {args} --cluster slurm || status=$?",
        "exit $status",
    ]


def script(sweep: Sweep, resources: Resources, sweep_path: str, overrides: list[str], arrays: list[str], log: Path) -> str:
    """The sbatch script of the report job (depends on `arrays` with afterany)."""
    python = resources.python or shlex.quote(sys.executable)
    options = {
        "job-name": job_name(sweep),
        "output": str(log),
        "open-mode": "append",
        "chdir": str(Path.cwd()),
        **resources.report.sbatch_options(),
        **{k: v for k, v in (("account", resources.account), ("qos", resources.qos)) if v},
        **resources.mail_options(),
    }
    if arrays:
        options["dependency"] = "afterany:" + ":".join(arrays)
    lines = ["#!/bin/bash", *(f"#SBATCH --{k}={shlex.quote(str(v))}" for k, v in options.items()), "", "# setup"]
    lines += [*resources.setup, *pythonpath_setup()]
    lines += ["", "# the report of whatever the runs wrote (an unfinished or missing run is listed as such)"]
    lines.append(f"mkdir -p {shlex.quote(str(sweep.runs_dir.resolve()))}")
    return "\n".join(lines + commands(python, sweep_path, overrides)) + "\n"


def state(rec: dict | None, sweep: Sweep) -> str | None:
    """The scheduler's word for the report job of `rec` (None without a record)."""
    if rec is None:
        return None
    found = scheduler.slurm_states([rec["job_id"]], job_name(sweep), scheduler.since([rec]))
    return found.get(rec["job_id"], scheduler.UNKNOWN).state


def ensure(
    sweep: Sweep,
    resources: Resources,
    sweep_path: str,
    overrides: list[str],
    arrays: list[str],
    submitted_now: bool,
    note: Callable[[str], None] = lambda s: print(s, flush=True),
) -> dict | None:
    """Submit the report job after `arrays` (the sweep's queued or running arrays), replacing a
    pending one; keep a live one when nothing new was submitted. Call under the sweep's lock.
    Returns the record in force, or None (report_job off, or nothing to wait for)."""
    if not resources.report_job or not arrays:
        return None
    old = ledger.read_report(sweep.sweep_dir)
    old_state = state(old, sweep)
    if old is not None and scheduler.JobState(old_state, "").active and not submitted_now:
        note(f"report job {old['job_id']} {old_state}: kept (it waits for arrays {', '.join(old.get('depends_on', []))})")
        return old
    replaced = None
    if old is not None and old_state == "PENDING":
        scheduler.cancel([old["job_id"]])
        replaced = old["job_id"]
    folder = (sweep.sweep_dir / "logs" / "report").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path, log = folder / f"{stamp}.sh", folder / f"{stamp}.out"
    path.write_text(script(sweep, resources, sweep_path, overrides, arrays, log))
    job_id = sbatch(path)
    if job_id is None:
        note("warning: sbatch refused the report job; run `make report` when the runs have ended")
        return None
    rec = {
        "job_id": job_id,
        "depends_on": list(arrays),
        "submitted_at": ledger.now_iso(),
        "log_out": str(log),
        "script": str(path),
        "report": str(report_path(sweep)),
        **({"replaced": replaced} if replaced else {}),
    }
    ledger.write(sweep.sweep_dir, ledger.read(sweep.sweep_dir), report=rec)
    note(
        f"report job {job_id} (afterany:{':'.join(arrays)}{f'; replaces pending {replaced}' if replaced else ''}) "
        f"writes {rec['report']} when the last run ends"
    )
    return rec


def sbatch(path: Path) -> str | None:
    try:
        p = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, timeout=scheduler.TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        print(f"warning: sbatch: {' '.join(p.stderr.split())}", file=sys.stderr, flush=True)
        return None
    return p.stdout.strip().split(";")[0] or None


def status_line(sweep: Sweep) -> str | None:
    """`make status`'s line on the report job: its state and, once it has ended, the report's path."""
    rec = ledger.read_report(sweep.sweep_dir)
    if rec is None:
        return None
    word = state(rec, sweep)
    line = f"report job {rec['job_id']}: {word} (afterany:{':'.join(rec.get('depends_on', []))})"
    html = Path(rec.get("report", report_path(sweep)))
    if not scheduler.JobState(word, "").active:
        line += f"; report: {html}" if html.exists() else f"; no report written, see {rec.get('log_out', '-')}"
    return line


def run_locally(sweep_path: str, overrides: list[str]) -> int:
    """The local backend's report at the end of its wait (as `make demo` does): in a child process."""
    cmd = [sys.executable, "-m", "analysis.report", sweep_path, *overrides]
    return subprocess.run(cmd).returncode
