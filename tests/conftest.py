"""Shared pytest set-up: the `slurm` and `gpu` markers, what every test runs on, small fixtures.

What the suite assumes of the machine, and where it says so:
- `slurm` tests need `sbatch` and a controller that answers `scontrol ping`; without them they are
  skipped (with REQUIRE_SLURM=1 they fail instead). Checked once per session, here.
- `speed_cluster` tests (slurm ones too) need the Speed-shaped cluster's partitions (ps, pg, pt,
  urgent: `.ci/slurm-cluster.sh up --speed`); skipped without them (failing with REQUIRE_SPEED_CLUSTER=1).
- `gpu` tests need a CUDA device (skipped without one). Every other test runs on the CPU whatever
  the machine has: CUDA is hidden from it, in this process and in what it starts (subprocesses and
  SLURM jobs inherit CUDA_VISIBLE_DEVICES=""), so a GPU workstation runs the same suite as a laptop.
- `real_data` tests read Debian's dataset-fashion-mnist: skipped without it (failing instead with
  REQUIRE_REAL_DATA=1).
- Row-equality tests compare CPU rows at ROW_THREADS torch threads (bit-identical only at a fixed
  count): this process uses it, and AL_THREADS makes runs started as subprocesses or SLURM jobs use
  it too, whatever SLURM_CPUS_ON_NODE a hyper-threaded node reports.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROW_THREADS = 1
os.environ["AL_THREADS"] = str(ROW_THREADS)
# Hidden for the whole session, so what any fixture starts (module-scoped ones included) runs on
# the CPU; `gpu` tests get the machine's value back before CUDA is first initialised.
_VISIBLE = os.environ.get("CUDA_VISIBLE_DEVICES")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


@functools.cache
def _slurm_missing() -> str | None:
    """Why the SLURM tests cannot run here (None: they can)."""
    if shutil.which("sbatch") is None:
        return "needs a SLURM cluster (sbatch not found)"
    try:
        p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        up = "is UP" in p.stdout
    except (OSError, subprocess.SubprocessError):
        up = False
    return None if up else "the SLURM controller does not answer (start it with: bash .ci/slurm-cluster.sh up)"


def pytest_collection_modifyitems(config, items):
    """Tests on Debian's Fashion-MNIST (the `fashion_root` fixture) are `real_data`: CI's second pass."""
    for item in items:
        if "fashion_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


def pytest_runtest_setup(item):
    if "slurm" in item.keywords and (why := _slurm_missing()):
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    if "speed_cluster" in item.keywords and (why := _speed_shape_missing()):
        if os.environ.get("REQUIRE_SPEED_CLUSTER") == "1":
            pytest.fail(f"REQUIRE_SPEED_CLUSTER=1 but {why}")
        pytest.skip(why)
    if "gpu" in item.keywords and not _cuda_present():
        pytest.skip("needs a CUDA device")
    if "cpu_host" in item.keywords and _cuda_present():
        pytest.skip("needs a host without a CUDA device (this one has one)")


@functools.cache
def _speed_shape_missing() -> str | None:
    """Why the Speed-shaped cluster's tests cannot run here (None: its partitions answer)."""
    if _slurm_missing():
        return _slurm_missing()
    p = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    if not {"ps", "pg", "pt", "urgent"} <= set(p.stdout.split()):
        return "needs the Speed-shaped cluster (bash .ci/slurm-cluster.sh up --speed)"
    return None


@functools.cache
def _cuda_present() -> bool:
    """Whether the machine has a CUDA device, asked in a child with the machine's own
    CUDA_VISIBLE_DEVICES (this process keeps CUDA uninitialised until a `gpu` test needs it)."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if _VISIBLE is not None:
        env["CUDA_VISIBLE_DEVICES"] = _VISIBLE
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session", autouse=True)
def _row_threads():
    """This process trains at the thread count the row-equality tests compare at."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(ROW_THREADS)
    yield
    torch.set_num_threads(default)


@pytest.fixture(autouse=True)
def _cpu_unless_gpu(request, monkeypatch):
    """CUDA for `gpu` tests only: every other test sees none, in this process and in its children."""
    if "gpu" in request.keywords:
        if _VISIBLE is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", _VISIBLE)
        return
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocesses."""
    return sys.executable


@pytest.fixture
def smoke_yaml(tmp_path: Path) -> Path:
    """A copy of jobs/smoke.yaml writing under tmp_path."""
    text = (ROOT / "jobs" / "smoke.yaml").read_text().replace("output: results", f"output: {tmp_path / 'results'}")
    path = tmp_path / "smoke.yaml"
    path.write_text(text)
    return path
