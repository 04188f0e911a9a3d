"""Helpers shared by the tests that run on the real SLURM cluster (tests/test_slurm_*.py).

Whether the cluster is there is checked once, for every `slurm`-marked test, in conftest.py."""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(directory: Path) -> Path:
    """A copy of jobs/smoke.yaml in `directory`, writing its results there."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "jobs" / "smoke.yaml").read_text().replace("output: results", f"output: {directory / 'results'}")
    path = directory / "smoke.yaml"
    path.write_text(text)
    return path


def wait_until(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "cycles.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Run lengths from a measured rate, not from one machine's speed: a test that needs a job still
# running (or still training when its time limit warns it) sizes the job in seconds of training.
_PROBE_EPOCHS = 6


@functools.cache
def _epoch_seconds(overrides: tuple[str, ...]) -> float:
    """Seconds per training epoch at the initial labelled-set size of these overrides, measured in
    this process (at the thread count the jobs use, conftest.ROW_THREADS)."""
    from al_core.config import load_sweep
    from al_core.loop import run

    with tempfile.TemporaryDirectory() as d:
        probe = [*overrides, "al.cycles=1", f"train.epochs={_PROBE_EPOCHS}", "train.checkpoint_every=0"]
        sweep = load_sweep(sweep_file(Path(d)), probe)
        spec = sweep.runs()[0]
        run(spec, sweep.run_dir(spec.run_id), log=lambda _: None)
        return rows(sweep.run_dir(spec.run_id))[0]["train_time_s"] / _PROBE_EPOCHS


def undisturbed(spec, run_dir: Path) -> list[dict]:
    """The comparable rows of `spec` run here, uninterrupted, at the jobs' thread count
    (conftest.ROW_THREADS, which this process trains at)."""
    from al_core.loop import run
    from al_core.results import comparable

    run(spec, run_dir, log=lambda _: None)
    return [comparable(r) for r in rows(run_dir)]


def epochs_for(seconds: float, overrides: list[str]) -> int:
    """Epochs per cycle that make one run of these overrides train for about `seconds` here
    (an epoch's time grows with the labelled set, cycle by cycle)."""
    from al_core.config import load_sweep

    measured = tuple(o for o in overrides if not o.startswith(("train.epochs=", "train.checkpoint", "slurm.")))
    with tempfile.TemporaryDirectory() as d:
        al = load_sweep(sweep_file(Path(d)), list(measured)).runs()[0].config.al
    growth = sum(al.initial_size + c * al.query_size for c in range(al.cycles)) / al.initial_size
    return max(2, math.ceil(seconds / (_epoch_seconds(measured) * growth)))
