"""`al-sweep COMMAND`: the console script dispatches to the module entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from slurm import cli

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_names_an_entry_point_with_main():
    import importlib

    assert set(cli.COMMANDS) == {"sweep", "status", "run", "report", "power", "data", "bench", "sync"}
    for module in cli.COMMANDS.values():
        assert callable(importlib.import_module(module).main)


def test_status_through_the_console_entry_point(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "slurm.cli", "status", "jobs/smoke.yaml", f"output={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and "total: 12 runs" in p.stdout, p.stderr


def test_unknown_command_is_one_error_line(capsys):
    assert cli.main(["sweeep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'sweeep'") and err.count("\n") == 1
