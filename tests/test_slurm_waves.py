"""A sequential study on a real SLURM cluster (.ci/slurm-cluster.sh up): the report job after a wave
looks at it and submits the next wave, exactly once, even when a second report job of the same wave
runs too; the last wave's report job stops the study.

Tiny runs (synthetic data, `slurm.profile=local`); marked `slurm`: skipped without sbatch, and when
the controller does not answer unless REQUIRE_SLURM=1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _cluster import wait_until
from al_core import study
from al_core.config import load_sweep
from slurm import ledger, scheduler
from test_waves import SWEEP

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]

# test_waves.SWEEP at a margin of 0.001 points and no true difference: the optimizer question stays
# undecided until the maximum of 4 trials, so the study runs exactly two waves of 2 trials.


def sbatch(script: str) -> str:
    p = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def ended(job_id: str) -> bool:
    state = scheduler.slurm_states([job_id]).get(job_id)
    return state is not None and not state.active


def test_the_report_job_submits_the_next_wave_once_and_a_second_report_job_submits_nothing(tmp_path):
    path = tmp_path / "seq.yaml"
    path.write_text(SWEEP.format(out=tmp_path / "results", margin=0.001))
    sweep_dir = load_sweep(path).sweep_dir
    extra: list[str] = []
    try:
        p = subprocess.run(
            [sys.executable, "-m", "slurm.sweep", str(path), "--cluster", "slurm"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        first = ledger.read_report(sweep_dir)
        wave1 = {r: rec["job_id"] for r, rec in ledger.read(sweep_dir).items()}
        assert sorted(wave1) == [f"resnet18-{o}-random-t{t}" for o in ("adam", "sgd") for t in (0, 1)]
        # A second report job of wave 1, after the same arrays (the same script: the same log)
        extra.append(sbatch(first["script"]))

        wait_until(lambda: len(study.looks(sweep_dir)) == 2, 600, "the looks at both waves", poll=2)
        last = ledger.read_report(sweep_dir)
        assert last["job_id"] != first["job_id"]
        wait_until(lambda: ended(extra[0]) and ended(last["job_id"]), 300, "every report job to end", poll=2)

        record = study.read(sweep_dir)
        assert [(w["wave"], w["trials"]) for w in record["waves"]] == [(1, 2), (2, 4)]
        looks = study.looks(sweep_dir)
        assert looks[0]["next"]["action"] == "wave" and looks[1]["next"]["action"] == "stop"
        records = ledger.read(sweep_dir)
        assert len(records) == 8 and all((sweep_dir / "runs" / r / "DONE").exists() for r in records)
        wave2 = {r: rec for r, rec in records.items() if r not in wave1}
        # wave 2 was submitted once: one array, each run once; wave 1's jobs untouched
        assert len({rec["job_id"].split("_")[0] for rec in wave2.values()}) == 1
        assert all(rec.get("submissions", 1) == 1 for rec in wave2.values())
        assert {r: records[r]["job_id"] for r in wave1} == wave1

        log = Path(first["log_out"]).read_text()
        assert log.count("wave 2 with 4 trials") == 1, log
        # the other report job of wave 1 found the wave claimed, or wave 2 already running
        assert log.count("nothing submitted here") + log.count("no look yet") == 1, log
        final = Path(last["log_out"]).read_text()
        assert "stops: undecided (optimizer) at the maximum of 4 trials" in final, final
    finally:
        ids = [rec["job_id"] for rec in ledger.read(sweep_dir).values()]
        report = ledger.read_report(sweep_dir)
        scheduler.cancel(ids + extra + ([report["job_id"]] if report else []))
