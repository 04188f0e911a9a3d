"""Experiment tracking (optional: `pip install .[wandb]`): one W&B run per AL run, behind a small
interface (`open_tracker(...) -> Tracker` with `log_cycle`, `catch_up`, `close`); wandb is imported
only here, and only when a sweep asks for `tracking.wandb`.

The W&B run's id is derived from the sweep's name and the run id (`wandb_id`), and it is opened
with `resume="allow"`, so a requeued or resubmitted job continues the same W&B run. Each finished
cycle is logged once: its row's scalar fields (x axis `n_labeled`) and its epochs' training curve
(x axis `epoch`, counted from the run's start); the cycles logged so far are recorded in
`<run_dir>/tracking.json` (written atomically once the W&B run holding them has been finished, so
its records are on disk), and a resumed run logs the cycles it finds unlogged before going on. Offline mode (the default) writes under `<run_dir>/wandb`;
`python -m slurm.sync SWEEP` uploads those runs. A tracking failure is logged once and the run goes
on untracked: tracking never fails a run, and W&B's own console capture and system metrics are off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Protocol

from al_core.errors import ConfigError
from al_core.io import atomic_write_json

STATE_FILE = "tracking.json"
EXTRA = "pip install '.[wandb]'"  # the optional extra that brings wandb
INIT_TIMEOUT_S = 20  # online mode: give up on the W&B server after this long (the run goes on untracked)


class Tracker(Protocol):
    def catch_up(self, rows: list[dict], epochs: list[dict]) -> None: ...
    def log_cycle(self, row: dict, epochs: list[dict]) -> None: ...
    def close(self) -> None: ...


class NullTracker(Tracker):
    """No tracking: every call does nothing (the protocol's empty methods, inherited)."""


def require(tracking: dict | None) -> None:
    """Refuse, before anything is planned or run, a sweep that asks for tracking without wandb."""
    if not tracking or "wandb" not in tracking:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"tracking.wandb: the wandb package is not installed; expected the optional extra: {EXTRA} "
            "(or remove tracking: from the sweep)"
        ) from None


def wandb_id(sweep_name: str, run_id: str) -> str:
    """A W&B run id (letters, digits, '-', '_'; at most 64) that is the same for every job of the run."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{sweep_name}-{run_id}").strip("-")
    if len(text) <= 64:
        return text
    return f"{text[:47]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def logged_cycles(run_dir: str | os.PathLike) -> set[int]:
    try:
        data = json.loads((Path(run_dir) / STATE_FILE).read_text())
        return {int(c) for c in data.get("logged_cycles", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def open_tracker(spec, run_dir: str | os.PathLike, log: Callable[[str], None]) -> Tracker:
    """The run's tracker (NullTracker when the sweep asks for none)."""
    if not spec.tracking or "wandb" not in spec.tracking:
        return NullTracker()
    return SafeTracker(WandbTracker(spec, Path(run_dir)), log)


class SafeTracker:
    """Turns any failure of the tracker into one warning; after it, tracking is off for this process."""

    def __init__(self, inner, log: Callable[[str], None]) -> None:
        self.inner, self.log = inner, log

    def _call(self, name: str, *args) -> None:
        if self.inner is None:
            return
        try:
            getattr(self.inner, name)(*args)
        except Exception as e:  # noqa: BLE001  (tracking must never fail the run)
            self.log(f"warning: tracking failed ({type(e).__name__}: {e}); the run goes on untracked")
            inner, self.inner = self.inner, None
            try:
                inner.abandon()
            except Exception:  # noqa: BLE001
                pass

    def catch_up(self, rows: list[dict], epochs: list[dict]) -> None:
        self._call("catch_up", rows, epochs)

    def log_cycle(self, row: dict, epochs: list[dict]) -> None:
        self._call("log_cycle", row, epochs)

    def close(self) -> None:
        self._call("close")


def scalars(row: dict) -> dict:
    """The row's scalar metrics (lists, dicts, strings and None are left out)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def tags(spec) -> list[str]:
    """The run's grid point as W&B tags: model, optimizer, strategy, trial, then key=value of extra axes."""
    return [spec.model, spec.optimizer, spec.strategy, f"t{spec.trial}", *(f"{k}={v}" for k, v in spec.axes.items())][:20]


class WandbTracker:
    def __init__(self, spec, run_dir: Path) -> None:
        self.spec, self.run_dir, self.cfg = spec, run_dir, spec.tracking["wandb"]
        self.run = None
        self.logged = logged_cycles(run_dir)

    def _start(self):
        if self.run is not None:
            return self.run
        import wandb

        settings = wandb.Settings(
            console="off", silent=True, init_timeout=INIT_TIMEOUT_S, x_disable_stats=True, save_code=False, disable_git=True
        )
        self.run = wandb.init(
            project=self.cfg["project"],
            entity=self.cfg["entity"],
            group=self.cfg["group"],
            mode=self.cfg["mode"],
            id=wandb_id(self.spec.sweep_name, self.spec.run_id),
            name=self.spec.run_id,
            resume="allow",
            dir=str(self.run_dir),
            config={**self.spec.config.to_dict(), **self.spec.axes},
            tags=tags(self.spec),
            reinit="create_new",
            settings=settings,
        )
        self.run.define_metric("n_labeled")
        self.run.define_metric("cycle/*", step_metric="n_labeled")
        self.run.define_metric("epoch")
        self.run.define_metric("train/*", step_metric="epoch")
        return self.run

    def catch_up(self, rows: list[dict], epochs: list[dict]) -> None:
        """Log the finished cycles not logged yet (a job killed between its row and its log)."""
        todo = [r for r in rows if int(r["cycle"]) not in self.logged]
        self._log([(r, [e for e in epochs if int(e.get("cycle", 0)) == int(r["cycle"])]) for r in todo])

    def log_cycle(self, row: dict, epochs: list[dict]) -> None:
        if int(row["cycle"]) not in self.logged:
            self._log([(row, epochs)])

    def _log(self, cycles: list[tuple[dict, list[dict]]]) -> None:
        """Log whole cycles, then finish the W&B run before recording them as logged: wandb writes
        its offline records only when a run finishes (a SIGKILL before that loses them all), so a
        cycle counts as logged only once it is on disk. About a second per cycle, offline."""
        if not cycles:
            return
        run = self._start()
        for row, epochs in cycles:
            cycle = int(row["cycle"])
            n = max(len(epochs), int(row.get("epochs") or len(epochs)), 1)
            for e in epochs:
                curve = {f"train/{k}": e[k] for k in ("train_loss", "train_accuracy", "lr") if k in e}
                run.log({"epoch": (cycle - 1) * n + int(e["epoch"]), **curve})
            run.log({"n_labeled": row["n_labeled"], **{f"cycle/{k}": v for k, v in scalars(row).items()}})
        wid = run.id
        self.close()
        self.logged |= {int(row["cycle"]) for row, _ in cycles}
        atomic_write_json(self.run_dir / STATE_FILE, {"wandb_id": wid, "logged_cycles": sorted(self.logged)})

    def close(self, **finish) -> None:
        if self.run is not None:
            self.run.finish(**finish)
            self.run = None

    def abandon(self) -> None:
        self.close(exit_code=1)
