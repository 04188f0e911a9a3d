"""Runs held after their job found a node that could not serve them (exit 78).

Resubmitting such a run blindly would only fail again after another wait in the queue: the cause
(no usable GPU, a PyTorch build without kernels for the GPU, a precision the GPU lacks, the dataset
missing) needs a person. The job writes `<sweep_dir>/held/<run_id>.json` (atomically; never inside
the run directory, which stays untouched) with the node and its one `error:` line; `make sweep`
skips held runs and says why until `--retry-failed`, and `make status` shows the line.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

from al_core.io import atomic_write_json
from al_core.rundir import slurm_job_id


def held_dir(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / "held"


def hold(sweep_dir: Path, run_id: str, message: str) -> Path:
    """Record that `run_id`'s job could not run on this node (called in the job before exit 78)."""
    record = {
        "run_id": run_id,
        "error": message,
        "host": socket.gethostname(),
        "job_id": slurm_job_id() or "-",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = held_dir(sweep_dir) / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return path


def read(sweep_dir: Path) -> dict[str, dict]:
    """run_id -> hold record, for every held run of the sweep (unreadable records are skipped)."""
    out = {}
    for path in sorted(held_dir(sweep_dir).glob("*.json")):  # none when the folder does not exist
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("run_id") == path.stem:
            out[path.stem] = rec
    return out


def release(sweep_dir: Path, run_ids) -> None:
    """Forget the holds of these runs (they are being resubmitted)."""
    for run_id in run_ids:
        (held_dir(sweep_dir) / f"{run_id}.json").unlink(missing_ok=True)
