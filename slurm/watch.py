"""Progress of a set of runs while a command waits for them (local runs, `make sweep --wait`)."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Callable

from al_core.config import Sweep
from slurm.plan import progress


class Watch:
    """Prints the progress of a set of runs: finished / total, each running run's latest cycle, an ETA.

    On a terminal (`tty`, default: stdout is one) it is a single line redrawn in place; into a file
    or a job log, plain timestamped lines when anything changed (and once a minute).
    """

    def __init__(
        self,
        sweep: Sweep,
        run_ids: list[str],
        print_fn: Callable[[str], None] = lambda s: print(s, flush=True),
        heartbeat_s: float = 60,
        tty: bool | None = None,
    ):
        self.sweep = sweep
        self.specs = {s.run_id: s for s in sweep.runs() if s.run_id in set(run_ids)}
        self.print = print_fn
        self.heartbeat_s = heartbeat_s
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.line = ""  # the progress line on the terminal (tty), redrawn after each note
        self.t0 = time.monotonic()
        self.cycles0 = self._cycles()
        self.last_key: tuple = ()
        self.last_time = 0.0

    def _cycles(self) -> int:
        return sum(progress(self.sweep, s).cycles for s in self.specs.values())

    def update(self, running: list[str], failed: list[str]) -> None:
        """Print the progress when anything changed (a run, a cycle), else once a minute."""
        progs = {r: progress(self.sweep, s) for r, s in self.specs.items()}
        running = [r for r in running if r in progs and not progs[r].done]
        done = sum(p.done for p in progs.values())
        cycles = sum(p.cycles for p in progs.values())
        total = sum(p.total for p in progs.values())
        key = (done, tuple(running), tuple(failed), tuple(p.cycles for p in progs.values()))
        now = time.monotonic()
        gained = cycles - self.cycles0  # the ETA is extrapolated from the cycles finished while watching
        eta = "0s" if done == len(progs) else ("?" if gained <= 0 else _duration((total - cycles) * (now - self.t0) / gained))
        counts = (f", {len(failed)} failed" if failed else "") + f" | cycles {cycles}/{total}"
        if self.tty:
            elapsed = _duration(now - self.t0)
            self._redraw(f"runs {done}/{len(progs)} done, {len(running)} running{counts} | {elapsed} elapsed | ETA {eta}")
            return
        if key == self.last_key and now - self.last_time < self.heartbeat_s:
            return
        self.last_key, self.last_time = key, now
        waiting = max(len(progs) - done - len(running) - len(failed), 0)
        head = f"[{datetime.now():%H:%M:%S}] {done}/{len(progs)} runs done, {len(running)} running, {waiting} queued"
        lines = [f"{head}{counts} | ETA {eta}"]
        for r in running:
            p = progs[r]
            acc = f", acc {100 * p.accuracy:.2f}%" if p.accuracy is not None else ""
            lines.append(f"    {r}: cycle {p.cycles}/{p.total} finished{acc}")
        self.print("\n".join(lines))

    def _redraw(self, line: str) -> None:
        """The terminal's one line: runs done / total, running, cycles, elapsed, ETA (from the cycles so far)."""
        if line != self.line:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
            self.line = line

    def note(self, message: str) -> None:
        """An event line (a run started, done, failed): timestamped in a log; on a terminal it is
        printed above the progress line, which is then redrawn."""
        if self.tty:
            sys.stdout.write("\r\033[K" + message + "\n" + self.line)
            sys.stdout.flush()
        else:
            self.print(f"[{datetime.now():%H:%M:%S}] {message}")

    def close(self) -> None:
        """End the terminal's progress line (the next output starts on a line of its own)."""
        if self.tty and self.line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.line = ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
