"""The installed package: a non-editable `pip install .` runs a sweep through `al-sweep` from a
directory that is not the clone, with the example sweeps and profiles it ships."""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_runs_a_smoke_sweep_from_an_unrelated_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pure = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The dependencies (torch, numpy, ...) and pip come from this environment, appended after the new
    # venv's own site-packages; its .pth files (the editable install of the clone) are not read from there.
    Path(pure, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Without build isolation pip builds with this environment's setuptools (offline, fast); a
    # Python 3.12+ venv has none, and then pip fetches the build backend into an isolated build env.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    p = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", *isolation, "--no-compile", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import al_core, slurm, analysis; print(al_core.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(Path(pure)), where  # the installed copy, not the clone

    out = tmp_path / "out"
    al_sweep = str(venv / "bin" / "al-sweep")
    sweep = ["smoke", f"output={out}", "grid.optimizer=[sgd]", "grid.strategy=[entropy,random]", "grid.trial=[0]", "al.cycles=2"]
    cmd = [al_sweep, "sweep", *sweep, "--cluster", "local", "--wait"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=elsewhere)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    runs = sorted((out / "smoke" / "runs").iterdir())
    assert [r.name for r in runs] == ["resnet18-sgd-entropy-t0", "resnet18-sgd-random-t0"]
    assert all((r / "DONE").exists() for r in runs)
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["config"]["al"]["cycles"] == 2

    p = subprocess.run(
        [al_sweep, "status", *sweep],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=elsewhere,
    )
    assert p.returncode == 0 and "DONE" in p.stdout, p.stdout + p.stderr
    assert not (elsewhere / "results").exists()  # everything went where output= said
