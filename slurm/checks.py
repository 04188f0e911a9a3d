"""What the login node can check before anything is submitted.

A job that would fail on its node after hours in the queue is refused here instead: the dataset
must be under `dataset.root`, the results directory writable, and the profile's interpreter
present where the login node can see its file system, with the Python and submitit versions of this
process (the job unpickles what this process pickles). Each problem is one line; nothing is checked
that the login node cannot see (a scratch file system mounted only on compute nodes).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import submitit

from al_core.config import Sweep
from al_core.data import missing_files
from slurm.profiles import Resources


def problems(sweep: Sweep, resources: Resources, cluster: str) -> list[str]:
    """One line per thing that would make every job of this sweep fail; empty when all is well."""
    out = []
    seen = set()
    for spec in sweep.runs():
        ds = spec.config.dataset
        if (ds.name, ds.root) in seen:
            continue
        seen.add((ds.name, ds.root))
        missing = missing_files(ds.name, ds.root)
        if ds.name == "npz" and ds.path and not Path(ds.path).is_file():
            out.append(
                f"dataset npz not found: dataset.path={ds.path} is not a file; expected a .npz with "
                "x_pool, y_pool, x_test, y_test (or x, y and dataset.test_fraction)"
            )
        if ds.name == "imagefolder" and not Path(ds.root).is_dir():
            out.append(
                f"dataset imagefolder not found: dataset.root={ds.root} is not a directory; expected "
                "root/train/<class>/* and root/test/<class>/* (or root/<class>/* and dataset.test_fraction)"
            )
        if missing:
            out.append(
                f"dataset {ds.name} not found: {missing[0]} is missing; run `make data SWEEP={sweep.path or '...'}` "
                f"on the login node (it downloads into dataset.root={ds.root}) or point dataset.root at a copy"
            )
    target = sweep.sweep_dir.resolve()
    existing = next((p for p in [target, *target.parents] if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        out.append(
            f"results directory {target} cannot be created or written ({existing} is not a writable directory); "
            "expected a writable `output` (on Speed: /speed-scratch/$USER/...)"
        )
    if cluster == "slurm" and resources.python:
        words = shlex.split(resources.python)
        exe = Path(os.path.expandvars(words[0])) if words else None
        if exe is not None and exe.is_absolute() and "$" not in str(exe):
            top = Path(*exe.parts[:2])  # e.g. /speed-scratch: visible here, or mounted only on the nodes
            if top.is_dir() and not exe.exists():
                out.append(
                    f"the profile's interpreter {exe} does not exist; create the environment with "
                    f"`make env` (profile {resources.profile}: env_prefix {resources.env_prefix}) or set slurm.python"
                )
            elif exe.is_file() and (mismatch := version_mismatch(str(exe))):
                out.append(mismatch)
    return out


VERSIONS = "import sys, submitit; print('%d.%d' % sys.version_info[:2], submitit.__version__)"


def version_mismatch(exe: str) -> str | None:
    """Why the job's interpreter `exe` could not run what this process submits (None: it can): the
    job unpickles this process's pickles, which needs the same Python minor version and submitit."""
    if os.path.realpath(exe) == os.path.realpath(sys.executable):
        return None
    here = f"{sys.version_info[0]}.{sys.version_info[1]} {submitit.__version__}"
    try:
        p = subprocess.run([exe, "-c", VERSIONS], capture_output=True, text=True, timeout=120)
        there = p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        there = None
    if there is None:
        return f"the job's interpreter {exe} cannot run `import submitit` here; expected the environment `make env` builds"
    if there.split() != here.split():
        (py, sub), (py_here, sub_here) = (there.split() + ["?"])[:2], here.split()
        return (
            f"the job's interpreter {exe} has Python {py} and submitit {sub}, this login node's {sys.executable} "
            f"Python {py_here} and submitit {sub_here}; the job could not read what this node submits: run make "
            "with the job's interpreter (make env records it in .python) or rebuild the environment"
        )
    return None
