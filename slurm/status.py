"""`python -m slurm.status SWEEP.yaml [key=value ...]`: one line per run of the sweep, and totals.

Each line: run id, state (DONE from the run directory, else the scheduler's state of the run's last
job from jobs.json, `-` never submitted), cycles done/total, latest test accuracy, job id, restarts
(starts of the run beyond its first: requeues and resubmissions, from run.json); a pending run's
line ends with squeue's reason (`waits: QOSMaxGRESPerUser`). After the totals, each reason in words
with what to do (slurm.reasons), the finished jobs' memory and elapsed time (sacct MaxRSS,
Elapsed) with the --mem a next sweep should ask, the report job's state (slurm.report_job) and, once it has ended, the report's path. For each run whose
job ended without DONE: the last lines of its error log and the path to the whole log.

Exit status: 0 the table was printed (whatever the runs' states); 1 the scheduler could not be
asked; 2 bad input (one `error:` line).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import Counter
from pathlib import Path

from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.results import DONE, is_done
from slurm import held, ledger, profiles, reasons, report_job, scheduler, waves
from slurm.plan import progress
from slurm.submit import job_name

TAIL_LINES = 12


def tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 64 * 1024))  # the last 64 KiB
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines()[-n:]]


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.status", description="One line per run of a sweep: state, cycles, accuracy, job.")
    p.sweep_arguments()
    args, sweep = p.parse_sweep(argv)
    profiles.resolve(sweep.slurm)  # the same input rules as slurm.sweep
    try:
        records = ledger.recover(sweep.sweep_dir, job_name(sweep), save=False)  # jobs.json, or rebuilt if lost
        states = scheduler.states(records, job_name(sweep))
    except scheduler.SchedulerError as e:
        fail(str(e), EXIT_IO)

    held_runs = held.read(sweep.sweep_dir)
    specs = sweep.runs()
    width = max(len(s.run_id) for s in specs)
    print(f"{'run':<{width}}  {'state':<13} {'cycles':>7}  {'acc':>7}  {'job':<14} {'restarts':>8}")
    counts: Counter[str] = Counter()
    waiting: Counter[str] = Counter()  # squeue's reason -> runs that wait for it
    cycles = total = 0
    failures = []
    for spec in specs:
        prog = progress(sweep, spec)
        state, rec = _state(spec.run_id, prog, records, states, held_runs)
        if rec is not None and state != DONE and not scheduler.JobState(state, "").active:
            failures.append((spec.run_id, state, rec))
        reason = states.get(spec.run_id, scheduler.UNKNOWN).reason if state == "PENDING" else ""
        if reason:
            waiting[reason] += 1
        counts[state] += 1
        cycles += prog.cycles
        total += prog.total
        print(_line(spec.run_id, width, state, prog, rec) + (f"  waits: {reason}" if reason else ""))
    states_text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (kv[0] != DONE, kv[0])))
    print(f"total: {len(specs)} runs: {states_text}; cycles {cycles}/{total}")
    _print_waiting(waiting)
    _print_usage({r: rec for r, rec in records.items() if rec.get("cluster") == "slurm"}, sweep)
    _print_report_job(sweep)
    for run_id, state, rec in failures:
        err = Path(rec.get("log_err", ""))
        if state == "HELD":
            h = held_runs[run_id]
            print(
                f"\n{run_id}: job {h.get('job_id', rec['job_id'])} on {h.get('host', '?')} exited 78: this node could not serve the run"
            )
            print(f"  | error: {h.get('error', '?')}")
            print(f"  whole log: {err}; fix the cause, then `make sweep ARGS=--retry-failed` resubmits held runs")
            continue
        print(f"\n{run_id}: job {rec['job_id']} {state} without DONE; last lines of {err}:")
        lines = tail(err)
        print("\n".join(f"  | {line}" for line in lines) if lines else "  (empty or missing)")
        print(f"  whole log: {err} (stdout: {rec.get('log_out', '-')}); `make sweep` resubmits this run")
    sys.stdout.flush()
    return 0


def _state(run_id: str, prog, records: dict, states: dict, held_runs: dict) -> tuple[str, dict | None]:
    """The run's state word (DONE from its directory, HELD after an exit 78, else the scheduler's) and its record."""
    rec = records.get(run_id)
    if prog.done:
        return DONE, rec
    if rec is None:
        return ("-" if not prog.cycles else "STARTED"), None  # STARTED: e.g. by python -m al_core.run
    state = states.get(run_id, scheduler.UNKNOWN).state
    if not scheduler.JobState(state, "").active and run_id in held_runs:
        state = "HELD"
    return state, rec


def _line(run_id: str, width: int, state: str, prog, rec: dict | None) -> str:
    acc = f"{100 * prog.accuracy:.2f}%" if prog.accuracy is not None else "-"
    job = rec["job_id"] if rec else "-"
    if rec and rec.get("shares_task_with"):
        job = f"{job}+{len(rec['shares_task_with'])}"  # this task also runs that many other runs
    return f"{run_id:<{width}}  {state:<13} {prog.cycles:>3}/{prog.total:<3}  {acc:>7}  {job:<14} {prog.restarts:>8}"


def _print_waiting(waiting: Counter[str]) -> None:
    """Why the pending runs wait (squeue's reasons), in words, once per reason."""
    if not waiting:
        return
    cap = scheduler.gpu_cap() if any("GRES" in r for r in waiting) else None
    print("why runs wait:")
    for reason, n in sorted(waiting.items(), key=lambda kv: -kv[1]):
        print(f"  {n} run{'s' if n > 1 else ''}: {reasons.explain(reason, cap)}")


def _print_usage(records: dict, sweep) -> None:
    """The memory (sacct MaxRSS, the largest step) and elapsed time of the finished runs' jobs, and
    the --mem a next sweep should ask: the largest MaxRSS plus a quarter, in whole GiB."""
    done = {r: rec["job_id"] for r, rec in records.items() if is_done(sweep.run_dir(r))}
    used = scheduler.usage(done.values(), scheduler.since(records[r] for r in done)) if done else {}
    rss = sorted((u[1], job) for job, u in used.items() if u[1])
    if not rss:
        return
    elapsed = sorted(u[0] for u in used.values() if u[0] is not None)
    peak, job = rss[-1]
    mem = max(1, math.ceil(peak * 1.25 / 2**30))
    print(
        f"memory: {len(rss)} finished jobs used at most {peak / 2**30:.2f} GiB (MaxRSS, job {job}), median "
        f"{rss[len(rss) // 2][0] / 2**30:.2f} GiB; elapsed median {statistics.median(elapsed) / 60:.1f} min, "
        f"max {elapsed[-1] / 60:.1f} min; a next sweep can ask slurm.mem={mem}G (MaxRSS + 25%)"
    )


def _print_report_job(sweep) -> None:
    """The report job's line (slurm.report_job), when the sweep has one."""
    try:
        line = report_job.status_line(sweep)
    except scheduler.SchedulerError as e:
        line = f"report job: state unknown ({e})"
    if line:
        print(line)
    study = waves.status_line(sweep)  # a sequential study: its wave and what the last look said
    if study:
        print(study)


if __name__ == "__main__":
    sys.exit(main())
