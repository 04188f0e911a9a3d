"""`python -m slurm.waves SWEEP.yaml [key=value ...] [--cluster slurm|local]`: a sequential study's
look at the end of a wave, and the next wave when the look leaves a primary question undecided.

A study with `analysis.sequential: {first, step, max}` runs its trials in waves. When a wave's
runs have ended (on SLURM: the report job, after the report; locally: `slurm.sweep` after its
wait), this computes the primary questions' verdicts (analysis.decide), records the look
(<sweep_dir>/study/look-NNN.json) and decides:
- every primary question decided: the study stops;
- `max` trials reached, or the next wave would pass `analysis.max_device_hours`: it stops undecided;
- otherwise wave NNN + 1 with `step` more trials (at most `max`) is claimed, exactly once
  (al_core.study.start_wave: a second report job of the same wave claims nothing), and on SLURM
  submitted with `python -m slurm.sweep` (new arrays and a report job after them); locally the
  caller runs it.
A kill anywhere is safe: the record says which wave is current, and `make sweep` submits whatever
of it is not done or queued.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from al_core import study
from al_core.cli import Parser, guarded
from al_core.config import Sweep
from al_core.results import is_done
from slurm.scheduler import own_environment


def unfinished(sweep: Sweep) -> list[str]:
    """The current wave's runs without DONE."""
    return [s.run_id for s in sweep.runs() if not is_done(sweep.run_dir(s.run_id))]


def look(sweep: Sweep, wave: int | None = None) -> dict | None:
    """Record the look at the sweep's wave (`wave`: the one its trials were loaded for; default the
    current one) and return it (None: not a sequential study). Call once every run of the wave is
    DONE (`unfinished`): a look decides on complete waves only."""
    seq = (sweep.raw.get("analysis") or {}).get("sequential")
    if not seq:
        return None
    from analysis.build import compute_tables, load  # the report's own tables: the same verdicts
    from analysis.metrics import run_seconds

    tables = compute_tables(load(sweep.sweep_dir, sweep))
    primary = tables.questions[tables.questions["primary"].astype(bool)]
    wave, planned = wave or study.current_wave(sweep.sweep_dir), len(sweep.grid["trial"])
    n = int(primary["n_trials"].min()) if len(primary) else 0
    seconds = float(run_seconds(tables.runs).sum())
    record = {
        "wave": wave,
        "n_trials": n,
        "planned_trials": planned,
        "device_hours": round(seconds / 3600, 4),
        "analysis": tables.study,
        "verdicts": [_plain(r) for r in primary.to_dict("records")],
    }
    record["next"] = decision(record, seq, (sweep.raw.get("analysis") or {}).get("max_device_hours"))
    study.write_look(sweep.sweep_dir, wave, record)
    return record


def decision(record: dict, seq: dict, max_hours: float | None) -> dict:
    """What follows a look: {"action": "stop" | "wave", "why", "trials"}."""
    open_ = [v["question"] for v in record["verdicts"] if v["verdict"] == "undecided"]
    planned = record["planned_trials"]
    if not open_:
        return {"action": "stop", "why": "every primary question is decided", "trials": planned}
    if planned >= seq["max"]:
        return {
            "action": "stop",
            "why": f"undecided ({', '.join(open_)}) at the maximum of {seq['max']} trials",
            "trials": planned,
        }
    nxt = min(planned + seq["step"], seq["max"])
    if max_hours is not None and planned:
        projected = record["device_hours"] * nxt / planned
        if projected > max_hours:
            why = (
                f"undecided ({', '.join(open_)}): {nxt} trials would take about {projected:.1f} device-hours, over {max_hours:g}"
            )
            return {"action": "stop", "why": why, "trials": planned}
    return {"action": "wave", "why": f"undecided: {', '.join(open_)}", "trials": nxt}


def advance(sweep: Sweep, note=print) -> bool:
    """Look at the current wave; claim the next when the look says so. True when this call claimed
    a wave (its runs are then to be submitted), False otherwise."""
    if not (sweep.raw.get("analysis") or {}).get("sequential"):
        return False
    left = unfinished(sweep)
    if left:  # a failed or still running run: no look, no decision (a later report job looks again)
        note(
            f"study {sweep.name}: wave {study.current_wave(sweep.sweep_dir)} has {len(left)} run(s) without DONE "
            f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): no look yet; `make sweep` resubmits them and "
            "the report job after them looks again"
        )
        return False
    # The wave these trials were loaded for: a second report job of a wave that loaded the sweep
    # before the first one claimed the next wave must not take the next wave for its own.
    seq = sweep.raw["analysis"]["sequential"]
    wave, now = study.wave_of(sweep.sweep_dir, len(sweep.grid["trial"]), seq["first"]), study.current_wave(sweep.sweep_dir)
    if wave != now:
        note(f"study {sweep.name}: wave {now} was started after this look's wave was loaded: nothing submitted here")
        return False
    record = look(sweep, wave)
    verdicts = "; ".join(f"{v['question']} {v['verdict']}" for v in record["verdicts"])
    step = record["next"]
    note(f"study {sweep.name}: wave {record['wave']} ({record['n_trials']} complete trials): {verdicts}")
    if step["action"] == "stop":
        note(f"study {sweep.name}: stops: {step['why']}")
        return False
    claimed = study.start_wave(sweep.sweep_dir, record["wave"] + 1, step["trials"], step["why"], seq["first"])
    if claimed:
        note(f"study {sweep.name}: wave {record['wave'] + 1} with {step['trials']} trials ({step['why']})")
    else:
        note(f"study {sweep.name}: wave {record['wave'] + 1} was started before: nothing submitted here")
    return claimed


def status_line(sweep: Sweep) -> str | None:
    """`make status`'s line on a sequential study: its wave, and what the last look said."""
    seq = (sweep.raw.get("analysis") or {}).get("sequential")
    if not seq:
        return None
    wave, trials = study.current_wave(sweep.sweep_dir), len(sweep.grid["trial"])
    line = f"study: wave {wave}, {trials} trials (first {seq['first']}, step {seq['step']}, max {seq['max']})"
    done = [lk for lk in study.looks(sweep.sweep_dir) if lk["wave"] <= wave]
    if done:
        last = done[-1]
        verdicts = "; ".join(f"{v['question']} {v['verdict']}" for v in last.get("verdicts", []))
        step = last.get("next") or {}
        running = "this wave runs because " if last["wave"] < wave else "after this wave: "
        line += f"; look at wave {last['wave']}: {verdicts}; {running}{step.get('why', '?')}"
    return line


def _plain(row: dict) -> dict:
    """A verdict row as JSON: numbers as floats (NaN as null), the rest as text."""
    out = {}
    for k, v in row.items():
        if isinstance(v, (bool, str)) or v is None:
            out[k] = v
        elif isinstance(v, (int, float)) or hasattr(v, "item"):
            v = v.item() if hasattr(v, "item") else v
            out[k] = None if isinstance(v, float) and v != v else v
        else:
            out[k] = str(v)
    return out


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.waves", description="A sequential study's look at its wave, and its next wave.")
    p.sweep_arguments()
    p.add_argument("--cluster", default="slurm", choices=("slurm", "local"), help="where the next wave runs")
    args, sweep = p.parse_sweep(argv)
    if not advance(sweep):
        return 0
    if args.cluster == "local":  # the caller (slurm.sweep) runs the wave
        return 0
    own_environment()  # inside the report job: its SLURM_* variables must not reach the new wave's jobs
    cmd = [sys.executable, "-m", "slurm.sweep", str(Path(args.sweep).resolve()), *args.overrides, "--cluster", "slurm"]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
