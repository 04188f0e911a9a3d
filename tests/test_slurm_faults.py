"""A cluster's bad days, caused on the real SLURM cluster: a ledger lost or cut short while jobs are
queued and running, a lock left by a job on a dead node, the controller stopped mid-sweep and
started again. Nothing may be lost or run twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import load_sweep
from _cluster import epochs_for, rows, sweep_file, undisturbed, wait_until
from slurm import ledger, scheduler

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
TWO = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0]", "slurm.profile=local"]


def sweep(path: Path, overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *overrides, "--cluster", "slurm", *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_lost_then_a_truncated_ledger_never_submits_a_held_run_twice(tmp_path):
    path = sweep_file(tmp_path)
    over = [*TWO, f"train.epochs={epochs_for(40, TWO)}"]  # both still queued or running below
    s = load_sweep(path, over)
    ids = [r.run_id for r in s.runs()]
    try:
        first = sweep(path, over)
        assert first.returncode == 0, first.stdout + first.stderr
        records = ledger.read(s.sweep_dir)
        jobs = {r: records[r]["job_id"] for r in ids}
        jpath = ledger.jobs_path(s.sweep_dir)

        jpath.unlink()  # lost
        status = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *over], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert status.returncode == 0 and "rebuilt 2 record(s)" in status.stderr, status.stdout + status.stderr
        assert all(jobs[r] in status.stdout for r in ids), status.stdout
        assert not jpath.exists()  # status reports; it does not write
        again = sweep(path, over)
        assert again.returncode == 0 and "0 to submit, 2 skipped (0 DONE, 2 queued or running)" in again.stdout, again.stdout
        assert {r: rec["job_id"] for r, rec in ledger.read(s.sweep_dir).items()} == jobs  # rebuilt and saved

        jpath.write_text(jpath.read_text()[:40])  # cut short, as by a full disk
        third = sweep(path, over)
        assert third.returncode == 0 and "0 to submit" in third.stdout and "rebuilt 2 record(s)" in third.stderr, third.stderr
        assert len(list(s.sweep_dir.glob("jobs.json.damaged-*"))) == 1

        done = sweep(path, over, "--wait")
        assert done.returncode == 0 and "all runs DONE" in done.stdout, done.stdout + done.stderr
        for r in ids:  # one job each, never restarted or resubmitted
            assert json.loads((s.run_dir(r) / "run.json").read_text())["restarts"] == 0
            out = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-o", "JobID", "-j", jobs[r].split("_")[0]], capture_output=True, text=True
            )
            assert jobs[r] in out.stdout.split()
        assert len({rec["job_id"] for rec in ledger.read(s.sweep_dir).values()}) == 2
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])


def test_a_lock_left_by_a_dead_node_is_taken_over_and_a_live_jobs_is_not(tmp_path):
    from tests.test_stale_lock import HOLD

    path = sweep_file(tmp_path)
    one = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "train.epochs=2", "slurm.profile=local"]
    s = load_sweep(path, one)
    run_id = s.runs()[0].run_id
    run_dir = s.run_dir(run_id)
    run_dir.mkdir(parents=True)
    live = subprocess.run(
        ["sbatch", "--parsable", "-J", "al-holder", "-o", "/dev/null", "--wrap", "sleep 300"], capture_output=True, text=True
    )
    live_job = live.stdout.strip().split(";")[0]
    holder = None
    try:
        assert live.returncode == 0, live.stderr
        wait_until(
            lambda: scheduler.slurm_states([live_job]).get(live_job, scheduler.UNKNOWN).state == "RUNNING",
            120,
            "the holder job to run",
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run_dir / ".lock"), "othernode", live_job], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout.readline().strip() == "held"
        refused = sweep(path, one, "--wait")  # the holder's job is alive: the run must not start
        assert refused.returncode != 0 and not (run_dir / "DONE").exists(), refused.stdout
        err = Path(ledger.read(s.sweep_dir)[run_id]["log_err"]).read_text()
        assert "is in use by host othernode" in err and "took over" not in err, err
        assert not list(run_dir.glob(".lock.stale-*"))

        scheduler.cancel([live_job])  # the holder's job ends; its lock stays (its node "died")
        wait_until(
            lambda: not scheduler.slurm_states([live_job]).get(live_job, scheduler.UNKNOWN).active, 60, "the holder job to end"
        )
        done = sweep(path, one, "--wait")
        assert done.returncode == 0 and (run_dir / "DONE").exists(), done.stdout + done.stderr
        out = Path(ledger.read(s.sweep_dir)[run_id]["log_out"]).read_text()
        assert f"took over the lock of {run_dir} held by job {live_job} on othernode" in out, out
        assert len(list(run_dir.glob(".lock.stale-*"))) == 1
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        scheduler.cancel([live_job, *(rec["job_id"] for rec in ledger.read(s.sweep_dir).values())])


CLUSTER_SCRIPT = ROOT / ".ci" / "slurm-cluster.sh"


def one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode not in (0, 2) and len(lines) == 1 and lines[0].startswith("error: "), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    return lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="stopping the cluster's controller needs root (CI runs as root)")
def test_a_controller_restart_mid_sweep_loses_nothing_and_runs_nothing_twice(tmp_path):
    from al_core.results import comparable

    path = sweep_file(tmp_path)
    over = [*TWO, f"train.epochs={epochs_for(20, TWO)}"]
    s = load_sweep(path, over)
    ids = [r.run_id for r in s.runs()]
    stopped = False
    try:
        first = sweep(path, over)
        assert first.returncode == 0, first.stdout + first.stderr
        jobs = {r: rec["job_id"] for r, rec in ledger.read(s.sweep_dir).items()}
        wait_until(lambda: any((s.run_dir(r) / "run.json").exists() for r in ids), 120, "a run to start", poll=0.2)
        before = ledger.jobs_path(s.sweep_dir).read_bytes()
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop-ctld"], check=True, capture_output=True, timeout=120)
        stopped = True
        status = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *over], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert "controller" in one_error_line(status)
        again = sweep(path, over)
        assert "nothing submitted" in one_error_line(again)
        assert ledger.jobs_path(s.sweep_dir).read_bytes() == before  # the ledger untouched
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "start-ctld"], check=True, capture_output=True, timeout=300)
        stopped = False
        done = sweep(path, over, "--wait")
        assert done.returncode == 0 and "0 to submit" in done.stdout and "all runs DONE" in done.stdout, done.stdout + done.stderr
        assert {r: rec["job_id"] for r, rec in ledger.read(s.sweep_dir).items()} == jobs  # nothing resubmitted
        for r in ids:
            assert json.loads((s.run_dir(r) / "run.json").read_text())["restarts"] == 0, r
            assert [comparable(x) for x in rows(s.run_dir(r))] == undisturbed(s.run(r), tmp_path / "undisturbed" / r), r
    finally:
        if stopped:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "start-ctld"], capture_output=True, timeout=300)
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_full_disk_stops_the_run_in_one_line_and_a_re_sweep_resumes_it(tmp_path):

    from al_core.io import read_jsonl
    from al_core.results import comparable

    mnt = tmp_path / "scratch"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True, timeout=60)
    try:
        path = sweep_file(mnt)  # results, checkpoints and job logs on the small file system
        one = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "slurm.profile=local"]
        over = [*one, f"train.epochs={epochs_for(30, one)}", "train.checkpoint_every=1"]
        s = load_sweep(path, over)
        run_id = s.runs()[0].run_id
        run_dir = s.run_dir(run_id)
        first = sweep(path, over)
        assert first.returncode == 0, first.stdout + first.stderr
        job = ledger.read(s.sweep_dir)[run_id]["job_id"]
        wait_until(lambda: len(rows(run_dir)) >= 1, 300, "the first cycle's row", poll=0.2)
        # Fill the disk but for 64 kB: log lines still fit, the next checkpoint (hundreds of kB) does not.
        with open(mnt / "filler", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(shutil.disk_usage(mnt).free - 64 * 1024, 1))
        wait_until(lambda: not scheduler.slurm_states([job]).get(job, scheduler.UNKNOWN).active, 300, "the job to stop")
        errors = [
            line
            for line in Path(ledger.read(s.sweep_dir)[run_id]["log_err"]).read_text().splitlines()
            if line.startswith("error:")
        ]
        assert len(errors) == 1 and "no space left on device" in errors[0] and str(run_dir) in errors[0], errors
        assert "the write needs" in errors[0] and "bytes free there" in errors[0], errors[0]
        assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "DONE").exists()  # nothing half-written
        kept = read_jsonl(run_dir / "cycles.jsonl")  # whole rows only
        assert [r["cycle"] for r in kept] == list(range(1, len(kept) + 1)) and len(kept) < 3
        json.loads((run_dir / "run.json").read_text())

        subprocess.run(["mount", "-o", "remount,size=96m", str(mnt)], check=True, timeout=60)  # the quota raised
        done = sweep(path, over, "--wait")
        assert done.returncode == 0 and "all runs DONE" in done.stdout, done.stdout + done.stderr
        assert [comparable(r) for r in rows(run_dir)] == undisturbed(s.run(run_id), tmp_path / "undisturbed")
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()] if "s" in locals() else [])
        subprocess.run(["umount", "-l", str(mnt)], timeout=60)


def node_state(node: str) -> str:
    out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], capture_output=True, text=True).stdout.split()
    return out[0].rstrip("*~#!%$@^-") if out else ""


@pytest.mark.skipif(os.geteuid() != 0, reason="setting the node DOWN needs root (CI runs as root)")
def test_a_node_that_dies_mid_run_requeues_the_job_which_resumes_from_its_checkpoint(tmp_path):

    from al_core.results import comparable

    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True).stdout.split()[0]
    path = sweep_file(tmp_path)
    one = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "slurm.profile=local"]
    over = [*one, f"train.epochs={epochs_for(30, one)}", "train.checkpoint_every=1"]
    s = load_sweep(path, over)
    run_id = s.runs()[0].run_id
    run_dir = s.run_dir(run_id)
    down = False
    try:
        first = sweep(path, over)
        assert first.returncode == 0, first.stdout + first.stderr
        job = ledger.read(s.sweep_dir)[run_id]["job_id"]
        wait_until(lambda: len(rows(run_dir)) >= 1 and list(run_dir.glob("ckpt-*")), 300, "cycle 2 to start", poll=0.2)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=al-sweep fault test"], check=True)
        down = True  # the job's processes are killed; SLURM requeues the job (it was submitted with --requeue)
        wait_until(
            lambda: scheduler.slurm_states([job]).get(job, scheduler.UNKNOWN).state != "RUNNING", 120, "the job to leave the node"
        )
        status = subprocess.run(
            [sys.executable, "-m", "slurm.status", str(path), *over], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert status.returncode == 0 and job in status.stdout, status.stdout + status.stderr
        # Back: resumed by hand, or already by SLURM itself (ReturnToService=2 once slurmd answers).
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
        down = False
        usable = ("idle", "mix", "mixed", "alloc", "allocated", "comp", "completing")
        wait_until(lambda: node_state(node) in usable, 120, f"node {node} to be back")
        wait_until(lambda: (run_dir / "DONE").exists(), 600, "the requeued run to finish", poll=2)
        assert ledger.read(s.sweep_dir)[run_id]["submissions"] == 1  # SLURM requeued the same job: nothing resubmitted
        record = json.loads((run_dir / "run.json").read_text())
        assert record["restarts"] >= 1
        log = (s.sweep_dir / "logs" / "runs" / f"{run_id}.out").read_text()
        assert "resumed at cycle" in log, log
        again = sweep(path, over)
        assert again.returncode == 0 and "0 to submit, 1 skipped (1 DONE" in again.stdout, again.stdout
        assert [comparable(r) for r in rows(run_dir)] == undisturbed(s.run(run_id), tmp_path / "undisturbed")
    finally:
        if down:
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])


def test_a_submission_refused_part_way_records_what_was_accepted_and_a_re_sweep_submits_the_rest(tmp_path):
    limit = scheduler.max_array_size()
    if limit > 8:
        pytest.skip(f"MaxArraySize is {limit}; start the cluster with AL_SLURM_MAX_ARRAY_SIZE=8 (as .ci/run does)")
    # sbatch as a per-user submit limit makes it: the first array accepted, the next refused.
    real = shutil.which("sbatch")
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/bash\n"
        f'n=$(cat "{tmp_path}/calls" 2>/dev/null || echo 0); echo $((n + 1)) > "{tmp_path}/calls"\n'
        'if [ "$n" -ge 1 ]; then echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2; '
        "echo 'sbatch: error: Batch job submission failed: Job violates accounting/QOS policy' >&2; exit 1; fi\n"
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    path = sweep_file(tmp_path / "sweep")
    over = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0,1,2,3,4,5]", "grid.train.width=[2,4]"]
    over += ["slurm.profile=local", "slurm.report_job=false"]
    s = load_sweep(path, over)
    ids = [r.run_id for r in s.runs()]
    assert len(ids) == 12
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "slurm.sweep", str(path), *over, "--cluster", "slurm", "--hold"]
    try:
        refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        line = one_error_line(refused)
        assert "QOSMaxSubmitJobPerUserLimit" in line and "(8 runs in earlier arrays were submitted)" in line, line
        accepted = ledger.read(s.sweep_dir)
        assert len(accepted) == 8 and len({r["job_id"].split("_")[0] for r in accepted.values()}) == 1
        rest = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert rest.returncode == 0, rest.stdout + rest.stderr
        assert "4 to submit, 8 skipped (0 DONE, 8 queued or running)" in rest.stdout, rest.stdout
        after = ledger.read(s.sweep_dir)
        assert sorted(after) == sorted(ids) and all(after[r] == accepted[r] for r in accepted)  # the 8 untouched
        assert all(rec["submissions"] == 1 for rec in after.values())
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(s.sweep_dir).values()])
