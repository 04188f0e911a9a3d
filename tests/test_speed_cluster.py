"""Day one on a cluster shaped like Speed (.ci/slurm-cluster.sh up --speed: partitions ps, pg, pt,
urgent; typed GPUs p6/v100/a100 with node features gpu16/gpu32; at most 4 GPUs per user; tcsh).

A QOS-capped sweep says why its runs wait; a GPU type and a node feature reach the scheduler;
`make env` refuses the login node and builds in a job; the README's day-one commands run in tcsh.
Marked `slurm` and `speed_cluster`: skipped elsewhere (conftest), failing instead with
REQUIRE_SPEED_CLUSTER=1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import load_sweep
from _cluster import epochs_for, sweep_file, wait_until
from slurm import ledger, scheduler
from test_speed_day_one import fake_commands

pytestmark = [pytest.mark.slurm, pytest.mark.speed_cluster]

ROOT = Path(__file__).resolve().parents[1]
SIX = ["grid.optimizer=[sgd,adam]", "grid.strategy=[random]", "grid.trial=[0,1,2]", "slurm.profile=local"]
# GPU jobs on the fake GPUs train on the CPU on purpose (the preflight would stop a GPU run: no CUDA)
ON_P6 = ["slurm.partition=pg", "slurm.gpus=1", "slurm.gpu_type=p6", "slurm.constraint=gpu16", "train.device=cpu"]


def cancel_sweep(sweep_dir: Path) -> None:
    ids = [rec["job_id"] for rec in ledger.read(sweep_dir).values()]
    report = ledger.read_report(sweep_dir)
    scheduler.cancel(ids + ([report["job_id"]] if report else []))


def test_a_qos_capped_sweep_says_why_two_runs_wait_and_its_gpu_type_and_feature_reach_sbatch(tmp_path):
    path = sweep_file(tmp_path)
    overrides = [*SIX, *ON_P6, "train.checkpoint_every=0", f"train.epochs={epochs_for(300, SIX)}"]
    sweep = load_sweep(path, overrides)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        records = ledger.read(sweep.sweep_dir)
        assert len(records) == 6

        def four_running_two_capped():
            states = scheduler.states(records, f"al-{sweep.name}")
            running = [s for s in states.values() if s.state == "RUNNING"]
            capped = [s for s in states.values() if s.state == "PENDING" and s.reason == "QOSMaxGRESPerUser"]
            return len(running) == 4 and len(capped) == 2

        wait_until(four_running_two_capped, 120, "4 runs running and 2 pending on the GPU cap", poll=2)
        st = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert st.returncode == 0, st.stderr
        lines = [line for line in st.stdout.splitlines() if line.split() and line.split()[0] in records]
        assert len(lines) == 6 and sum(line.endswith("waits: QOSMaxGRESPerUser") for line in lines) == 2, st.stdout
        assert "2 runs: QOSMaxGRESPerUser: at most 4 GPUs at once for your account (QOS limit)" in st.stdout
        assert "runs_per_task" in st.stdout
        # the GPU type and the node feature as the scheduler holds them
        job = next(iter(records.values()))["job_id"]
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        assert "Features=gpu16" in shown and re.search(r"TresPer\w+=gres:gpu:p6:1", shown), shown
    finally:
        cancel_sweep(sweep.sweep_dir)


def test_make_env_is_refused_on_the_login_node_and_builds_in_a_job(tmp_path):
    log = tmp_path / "conda.log"
    env = {**fake_commands(tmp_path / "bin", log), "ENV_PREFIX": str(tmp_path / "envs" / "al"), "TORCH_BUILD": ""}
    env["PATH"] = env["PATH"].replace(f"{tmp_path / 'bin'}:", f"{tmp_path / 'bin'}:{Path(shutil_which('sbatch')).parent}:")
    env["PYTHON_FILE"] = str(tmp_path / "python.txt")
    (tmp_path / "bin" / "sbatch").unlink()  # the cluster's own sbatch
    off = subprocess.run(["make", "-s", "-C", str(ROOT), "env"], env=env, capture_output=True, text=True)
    assert off.returncode == 2 and off.stderr.startswith("error: make env builds PyTorch's environment and must run in a job")
    srun = ["srun", "-p", "ps", "-t", "5", "--mem=500M", "make", "-s", "-C", str(ROOT), "env"]
    on = subprocess.run(srun, env=env, capture_output=True, text=True, timeout=300)
    assert on.returncode == 0, on.stderr
    assert f"TMPDIR={tmp_path}/envs/al-build/tmp" in log.read_text()
    assert (tmp_path / "python.txt").read_text().strip() == f"{tmp_path}/envs/al/bin/python"


def shutil_which(name: str) -> str:
    import shutil

    found = shutil.which(name)
    assert found, f"{name} not on PATH"
    return found


def readme_tcsh_block() -> list[str]:
    """The README's day-one commands: the ```tcsh block of the Speed section."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```tcsh\n(.*?)```", text, flags=re.S)
    assert block, "README.md has no ```tcsh block of day-one commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_tcsh_runs_the_readmes_day_one_commands(tmp_path):
    """Each line as README writes it, in `tcsh -f`, in the clone; `module` and conda are fakes
    (conda makes the environment's python a wrapper of this one)."""
    lines = readme_tcsh_block()
    assert not any(re.match(r"(export|setenv) ", line) for line in lines)
    smoke = sweep_file(tmp_path / "sweep")
    log = tmp_path / "conda.log"
    env = fake_commands(tmp_path / "bin", log)
    (tmp_path / "bin" / "sbatch").unlink()
    conda = tmp_path / "bin" / "conda"
    conda.write_text(
        conda.read_text()
        + 'case "$*" in "env create --prefix "*) mkdir -p "$4/bin" && '
        + f'printf \'#!/bin/sh\\nexec {sys.executable} "$@"\\n\' > "$4/bin/python" && chmod 755 "$4/bin/python";; esac\n'
    )
    env.update(
        ENV_PREFIX=str(tmp_path / "envs" / "al"), PYTHON_FILE=str(tmp_path / "python.txt"), TORCH_BUILD="", SHELL="/usr/bin/tcsh"
    )
    (tmp_path / "bin" / "module").write_text("#!/bin/sh\necho module $*\n")  # Speed's `module`: an alias there
    (tmp_path / "bin" / "module").chmod(0o755)
    results = []
    for line in [line.replace("jobs/cifar10.yaml", str(smoke)) for line in lines]:
        p = subprocess.run(["tcsh", "-f", "-c", f"cd {ROOT}; {line}"], env=env, capture_output=True, text=True, timeout=600)
        results.append((line, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    for line, rc, out, err in results:
        if "make preflight" in line:  # fake GPUs: the preflight's exit 78 and its line are the right answer
            assert "the job asked for a GPU but" in out + err and "Error 78" in err, (line, out, err)
        else:
            assert rc == 0, (line, out, err)
    assert (tmp_path / "python.txt").read_text().strip() == f"{tmp_path}/envs/al/bin/python"


def test_a_run_preempted_under_cancel_is_resubmitted_by_the_report_job_and_ends_as_if_undisturbed(tmp_path):
    """pt's preemption cancels: the run's job ends PREEMPTED; the report job (afterany) submits the
    run again with a new report job after it; the run resumes from its checkpoint, finishes with the
    rows of an undisturbed run, and the second report job writes the report."""
    from _cluster import rows, undisturbed
    from al_core.results import comparable
    from slurm.report_job import report_path

    path = sweep_file(tmp_path / "sweep")
    base = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "slurm.profile=local"]
    overrides = [*base, "slurm.partition=pt", f"train.epochs={epochs_for(60, base)}"]
    sweep = load_sweep(path, overrides)
    spec = sweep.runs()[0]
    run_dir = sweep.run_dir(spec.run_id)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        first = ledger.read(sweep.sweep_dir)[spec.run_id]["job_id"]
        wait_until(lambda: len(rows(run_dir)) >= 1, 300, "the run's first cycle")
        urgent = ["sbatch", "--parsable", "-p", "urgent", "-c", "16", "--mem=100M", "-t", "2", "-o", "/dev/null"]
        subprocess.run([*urgent, "--wrap", "sleep 5"], check=True, capture_output=True, text=True)
        state = lambda: scheduler.slurm_states([first]).get(first, scheduler.UNKNOWN).state  # noqa: E731
        # the run catches the SIGTERM, checkpoints and exits 75: sacct reads FAILED (PREEMPTED if it were killed)
        ended = wait_until(lambda: state() in ("PREEMPTED", "FAILED") and state(), 120, f"job {first} preempted")
        wait_until(lambda: report_path(sweep).exists(), 900, "the report after the resubmitted run", poll=3)
        rec = ledger.read(sweep.sweep_dir)[spec.run_id]
        assert rec["job_id"] != first and rec.get("submissions") == 2, rec
        got = [comparable(r) for r in rows(run_dir)]
        assert got == undisturbed(spec, tmp_path / "reference" / spec.run_id)
        logs = "".join(f.read_text() for f in (sweep.sweep_dir / "logs" / "report").glob("*.out"))
        assert f"resubmit: {spec.run_id}: job {first} {ended}" in logs, logs
    finally:
        cancel_sweep(sweep.sweep_dir)
