"""`python -m slurm.sync SWEEP.yaml [key=value ...]`: upload the sweep's offline W&B runs
(`tracking.wandb` with mode offline writes them under each run's directory) with `wandb sync`.
Run it from a node with internet (a login node). Already uploaded runs are skipped by wandb itself.

Exit status: 0 every offline run was synced (or there was none); 1 `wandb sync` failed; 2 bad input
(the sweep asks for no tracking, or wandb is not installed): one `error:` line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from al_core import tracking
from al_core.cli import Parser, fail, guarded


def offline_runs(runs_dir: Path) -> list[Path]:
    """Every offline W&B run directory under the sweep's runs (one per job that tracked a run)."""
    return sorted(runs_dir.glob("*/wandb/offline-run-*"))


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m slurm.sync", description="Upload the offline W&B runs of a sweep.")
    p.sweep_arguments()
    args, sweep = p.parse_sweep(argv)
    if not sweep.tracking:
        fail("tracking: this sweep asks for no experiment tracking; expected tracking.wandb in the sweep file")
    tracking.require(sweep.tracking)
    dirs = offline_runs(sweep.runs_dir)
    if not dirs:
        print(f"no offline W&B runs under {sweep.runs_dir}")
        return 0
    print(f"syncing {len(dirs)} offline W&B run(s) of {sweep.runs_dir}", flush=True)
    cmd = [sys.executable, "-m", "wandb", "sync", "--yes", *map(str, dirs)]
    return 0 if subprocess.run(cmd).returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
