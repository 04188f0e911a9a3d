"""Shared pytest set-up: the `slurm` and `gpu` markers, and small fixtures."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_runtest_setup(item):
    if "slurm" in item.keywords and shutil.which("sbatch") is None:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail("REQUIRE_SLURM=1 but sbatch is missing: start the cluster with .ci/slurm-cluster.sh up")
        pytest.skip("needs a SLURM cluster (sbatch not found)")
    if "gpu" in item.keywords:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


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
