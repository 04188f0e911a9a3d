"""What a new user of a cluster like Speed meets on day one, without a cluster: `make env` off a job,
its caches in scratch and the interpreter file every target reads; the job's interpreter checked
against this one; sbatch without srun. The same on the Speed-shaped cluster: test_speed_cluster.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slurm import backend, checks, profiles

ROOT = Path(__file__).resolve().parents[1]


def fake_commands(bin_dir: Path, log: Path) -> dict[str, str]:
    """sbatch (present: a login node) and a conda that logs its arguments and the build's variables."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "conda").write_text(
        f'#!/bin/sh\necho "conda $* | TMPDIR=$TMPDIR PIP_CACHE_DIR=$PIP_CACHE_DIR CONDA_PKGS_DIRS=$CONDA_PKGS_DIRS" >> {log}\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def make_env(tmp_path: Path, env: dict, *runner: str) -> subprocess.CompletedProcess:
    args = [f"ENV_PREFIX={tmp_path / 'envs' / 'al'}", f"PYTHON_FILE={tmp_path / 'python.txt'}", "TORCH_BUILD="]
    return subprocess.run([*runner, "make", "-s", "-C", str(ROOT), "env", *args], env=env, capture_output=True, text=True)


def test_make_env_on_a_login_node_is_refused_in_one_line(tmp_path):
    log = tmp_path / "conda.log"
    p = make_env(tmp_path, fake_commands(tmp_path / "bin", log))
    assert p.returncode == 2, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "must run in a job, not on the login node" in errors[0] and "srun -p ps" in errors[0]
    assert not log.exists() and not (tmp_path / "python.txt").exists()  # nothing built, nothing recorded


def test_make_env_in_a_job_builds_with_caches_in_scratch_and_records_the_interpreter(tmp_path):
    log = tmp_path / "conda.log"
    env = {**fake_commands(tmp_path / "bin", log), "SLURMD_NODENAME": "node1", "SLURM_JOB_ID": "7"}
    p = make_env(tmp_path, env)
    assert p.returncode == 0, p.stderr
    build = tmp_path / "envs" / "al-build"
    calls = log.read_text().splitlines()
    assert calls and all(
        f"TMPDIR={build}/tmp PIP_CACHE_DIR={build}/pip-cache CONDA_PKGS_DIRS={build}/conda-pkgs" in c for c in calls
    ), calls
    assert calls[0].startswith(f"conda env create --prefix {tmp_path / 'envs' / 'al'}")
    assert (tmp_path / "python.txt").read_text().strip() == str(tmp_path / "envs" / "al" / "bin" / "python")
    # every target now runs that interpreter, with no shell-specific export
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "status", f"PYTHON_FILE={tmp_path / 'python.txt'}"], text=True, capture_output=True
    )
    assert f"{tmp_path / 'envs' / 'al' / 'bin' / 'python'} -m slurm.status" in dry.stdout


def test_an_explicit_python_still_wins_over_the_interpreter_file(tmp_path):
    (tmp_path / "python.txt").write_text("/from/the/file/python\n")
    cmd = ["make", "-n", "-C", str(ROOT), "status", f"PYTHON_FILE={tmp_path / 'python.txt'}", "PYTHON=/mine/python"]
    assert "/mine/python -m slurm.status" in subprocess.run(cmd, text=True, capture_output=True).stdout


def test_sbatch_without_srun_is_one_error_line(monkeypatch):
    monkeypatch.setattr(backend.scheduler, "have_slurm", lambda: True)
    real = shutil.which
    monkeypatch.setattr(backend.shutil, "which", lambda c, *a, **k: None if c == "srun" else real(c, *a, **k))
    with pytest.raises(backend.ConfigError, match="sbatch is on PATH but srun is not"):
        backend.resolve_cluster("auto")
    assert backend.resolve_cluster("slurm", dry_run=True) == "slurm"  # a dry run submits nothing


def interpreter(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "envs" / "al" / "bin" / "python"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return str(exe)


def test_the_jobs_interpreter_must_match_this_python_and_submitit(tmp_path, smoke_yaml):
    from al_core.config import load_sweep

    other = interpreter(tmp_path, 'echo "3.9 1.4.2"')
    sweep = load_sweep(smoke_yaml, [f"slurm.python={other}"])
    trouble = checks.problems(sweep, profiles.resolve(sweep.slurm), "slurm")
    assert len(trouble) == 1 and f"the job's interpreter {other} has Python 3.9 and submitit 1.4.2" in trouble[0]
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]}" in trouble[0]
    same = interpreter(tmp_path / "same", f'exec {sys.executable} "$@"')  # another path to this interpreter
    assert checks.version_mismatch(same) is None
    broken = interpreter(tmp_path / "broken", "exit 1")
    assert "cannot run `import submitit`" in checks.version_mismatch(broken)


def test_a_mismatched_interpreter_refuses_the_sweep_in_one_line(tmp_path, smoke_yaml, capsys, monkeypatch):
    from slurm.sweep import main as sweep_main

    monkeypatch.setattr(backend.scheduler, "have_slurm", lambda: True)
    monkeypatch.setattr(backend.shutil, "which", lambda c, *a, **k: f"/usr/bin/{c}")
    other = interpreter(tmp_path, 'echo "3.9 1.4.2"')
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), f"slurm.python={other}", "--cluster", "slurm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: the job's interpreter"), err
    assert "nothing submitted" in err[0] and not (tmp_path / "results").exists()
