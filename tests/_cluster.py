"""Helpers shared by the tests that run on the real SLURM cluster (tests/test_slurm_*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def require_controller() -> None:
    """Skip (or fail with REQUIRE_SLURM=1) when the SLURM controller does not answer."""
    try:
        up = "is UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        up = False
    if not up:
        message = "the SLURM controller does not answer; start it with: bash .ci/slurm-cluster.sh up"
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


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
