"""slurm/ without a cluster: planning, dry run, profiles and refused values, the Speed sbatch script
(golden file), jobs.json and its lock, the job callable under submitit's real signal handling, and
the local executor end to end."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit

from al_core.config import load_sweep
from al_core.results import EXIT_INTERRUPTED
from slurm import ledger, profiles, scheduler, submit
from slurm.job import RunJob
from slurm.plan import make_plan
from slurm.scheduler import JobState
from slurm.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "sbatch_speed.sh"
SMALL = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0,1]", "train.epochs=2"]


@pytest.fixture
def no_scheduler(monkeypatch):
    """Plans without asking a real scheduler: every slurm job id is unknown to it."""
    monkeypatch.setattr(scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {})


# ----------------------------------------------------------------------------------------------
# planning
def test_run_ids_follow_the_contract(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["grid.train.width=[4,8]"])
    ids = [s.run_id for s in sweep.runs()]
    assert len(ids) == 1 * 2 * 3 * 2 * 2
    assert ids[0] == "resnet18-sgd-entropy-t0-4" and ids[1] == "resnet18-sgd-entropy-t0-8"
    assert "resnet18-adam-random-t1-8" in ids and len(set(ids)) == len(ids)


ACTIVE = ["PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD"]
RESUBMIT = [
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "COMPLETED",
    "UNKNOWN",
]


def test_plan_skips_done_and_active_runs_and_resubmits_the_rest(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["grid.trial=[0,1,2]"])
    specs = sweep.runs()
    done = specs[0].run_id
    (sweep.run_dir(done)).mkdir(parents=True)
    (sweep.run_dir(done) / "DONE").write_text("x\n")
    records, states = {}, {}
    cases = list(zip(specs[1:], ACTIVE + RESUBMIT))
    assert len(cases) == len(ACTIVE + RESUBMIT)
    for i, (spec, state) in enumerate(cases):
        records[spec.run_id] = {"job_id": f"7_{i}", "cluster": "slurm", "submissions": 1}
        states[spec.run_id] = JobState(state, "sacct")
    plan = make_plan(sweep, records, states)
    by_id = {d.run_id: d for d in plan.decisions}
    assert not by_id[done].submit and by_id[done].reason == "DONE"
    for spec, state in cases:
        d = by_id[spec.run_id]
        assert d.submit == (state not in ACTIVE), (state, d)
        assert d.job_id == records[spec.run_id]["job_id"]
    assert len(plan.decisions) == len(specs)
    never = [s for s in specs[1 + len(cases) :]]
    assert all(by_id[s.run_id].submit and by_id[s.run_id].reason == "new" for s in never)


def test_plan_refuses_a_run_dir_of_another_config(smoke_yaml, tmp_path, capsys, no_scheduler):
    sweep = load_sweep(smoke_yaml)
    run_id = sweep.runs()[0].run_id
    sweep.run_dir(run_id).mkdir(parents=True)
    other = load_sweep(smoke_yaml, ["train.epochs=9"]).run(run_id)
    (sweep.run_dir(run_id) / "run.json").write_text(json.dumps({"config": other.config.to_dict()}))
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), "--cluster", "slurm", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "differs in train.epochs" in err[0], err


# ----------------------------------------------------------------------------------------------
# dry run
def test_dry_run_prints_plan_skips_and_sbatch_script_and_submits_nothing(smoke_yaml, tmp_path, capsys, no_scheduler):
    sweep = load_sweep(smoke_yaml)
    done, queued, failed = (s.run_id for s in sweep.runs()[:3])
    sweep.run_dir(done).mkdir(parents=True)
    (sweep.run_dir(done) / "DONE").write_text("x\n")
    records = {
        queued: {"job_id": "41_1", "cluster": "slurm", "submissions": 1},
        failed: {"job_id": "41_2", "cluster": "slurm", "submissions": 1},
    }
    ledger.write(sweep.sweep_dir, records)
    before = sorted(p for p in tmp_path.rglob("*"))
    states = {"41_1": JobState("PENDING", "squeue"), "41_2": JobState("FAILED", "sacct")}
    scheduler_states = lambda ids, name=None, since_iso=None: {i: states[i] for i in ids if i in states}  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scheduler, "slurm_states", scheduler_states)
        mp.setattr(scheduler, "max_array_size", lambda: 1001)
        assert sweep_main([str(smoke_yaml), "slurm.array_parallelism=4", "--cluster", "slurm", "--dry-run"]) == 0
        out = capsys.readouterr().out
        mp.setattr(scheduler, "max_array_size", lambda: 8)  # a cluster with a small MaxArraySize: two arrays
        assert sweep_main([str(smoke_yaml), "slurm.array_parallelism=4", "--cluster", "slurm", "--dry-run"]) == 0
        split = capsys.readouterr().out
    assert "10 runs exceed the cluster's MaxArraySize: 2 job arrays" in split and "#SBATCH --array=0-7%4" in split
    assert f"skip    {done}" in out and "DONE" in out
    assert "job 41_1 PENDING" in out
    assert "job 41_2 FAILED: resubmit (1 so far)" in out
    assert out.count("  submit  ") == 10 and out.count("  skip    ") == 2
    assert "#SBATCH --array=0-9%4" in out and "#SBATCH --requeue" in out and "#SBATCH --signal=USR2@60" in out
    assert "nothing submitted" in out
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, no log folder, no lock


def test_dry_run_local_says_how_many_at_once(smoke_yaml, tmp_path, capsys):
    assert sweep_main([str(smoke_yaml), *SMALL, "--cluster", "local", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no sbatch script" in out and f"at most {min(os.cpu_count(), 4)} runs at once" in out
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------------------------
# profiles
def test_speed_profile_merged_with_sweep_overrides(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["slurm.profile=speed", "slurm.partition=pt", "slurm.mem=20G", "slurm.time=02:30:00"])
    r = profiles.resolve(sweep.slurm)
    assert (r.partition, r.mem, r.time_min, r.gpus, r.cpus) == ("pt", "20G", 150, 1, 4)
    assert r.array_parallelism == 4 and r.max_timeouts == 10 and r.signal_delay_s == 120
    assert r.python == '"/speed-scratch/$USER/envs/al-sweep/bin/python"'
    assert 'conda activate "/speed-scratch/$USER/envs/al-sweep"' in r.setup
    params = r.executor_parameters("al-x")
    assert params["additional_parameters"] == {"requeue": True, "gpus": 1}
    assert params["partition"] == "pt" and params["mem"] == "20G" and params["cpus_per_task"] == 4


def test_gpu_type_constraint_and_wckey_reach_submitit(smoke_yaml):
    r = profiles.resolve({"profile": "speed", "gpu_type": "v100", "constraint": "gpu32|gpu16"})
    params = r.executor_parameters("al-x")
    assert params["additional_parameters"]["gpus"] == "v100:1" and params["constraint"] == "gpu32|gpu16"
    assert params["wckey"] is None and "1 v100 GPU (nodes with gpu32|gpu16)" in r.describe()
    for off in (False, None, ""):
        assert profiles.resolve({"profile": "local", "extra": {"wckey": off}}).executor_parameters("x")["wckey"] is None
    named = profiles.resolve({"profile": "local", "extra": {"wckey": "mine"}}).executor_parameters("x")
    assert named["wckey"] == "mine" and "wckey" not in named["additional_parameters"]


def test_speed_profile_names_pg_truthfully_and_covers_the_p6():
    r = profiles.resolve({"profile": "speed"})
    assert "6.1" in r.gpu_capabilities and r.constraint == "gpu16" and r.array_parallelism == 4
    text = (ROOT / "jobs" / "profiles" / "speed.yaml").read_text()
    assert "Tesla P6 16GB" in text and "pg = V100" not in text


def test_local_profile_asks_for_nothing_cluster_specific():
    r = profiles.resolve({"profile": "local"})
    assert (r.partition, r.gpus, r.cpus, r.mem, r.account, r.qos, r.setup) == (None, 0, None, None, None, None, ())
    params = r.executor_parameters("al-x")
    assert not {"partition", "mem", "cpus_per_task", "account", "qos"} & set(params)
    assert params["additional_parameters"] == {"requeue": True}


@pytest.mark.parametrize(
    "text,minutes",
    [(90, 90), ("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-00:00:00", 1440), ("2-12", 3600), ("1-01:30", 1530)],
)
def test_time_limits(text, minutes):
    assert profiles.parse_time(text) == minutes


REFUSED = [
    (["slurm.partition=''"], "slurm.partition"),
    (['slurm.partition="pg\\nhostname"'], "slurm.partition"),
    (["slurm.partition=two words"], "slurm.partition"),
    (["slurm.time=0"], "slurm.time"),
    (["slurm.time=-5"], "slurm.time"),
    (["slurm.time=00:00:00"], "slurm.time"),
    (["slurm.time=soon"], "slurm.time"),
    (["slurm.mem=0G"], "slurm.mem"),
    (["slurm.mem=0"], "slurm.mem"),
    (["slurm.mem=-4G"], "slurm.mem"),
    (["slurm.mem=lots"], "slurm.mem"),
    (["slurm.cpus=0"], "slurm.cpus"),
    (["slurm.cpus=four"], "slurm.cpus"),
    (["slurm.gpus=-1"], "slurm.gpus"),
    (["slurm.array_parallelism=0"], "slurm.array_parallelism"),
    (["slurm.max_timeouts=-1"], "slurm.max_timeouts"),
    (["slurm.signal_delay_s=-1"], "slurm.signal_delay_s"),
    (["slurm.time=1", "slurm.signal_delay_s=60"], "slurm.signal_delay_s"),
    (["slurm.account=a b"], "slurm.account"),
    (['slurm.setup=["echo hi\\nrm -rf x"]'], "slurm.setup"),
    (["slurm.setup=echo"], "slurm.setup"),
    (['slurm.extra={constraint: "a\\nb"}'], "slurm.extra"),
    (["slurm.extra={array: 0-3}"], "slurm.extra"),
    (["slurm.extra={partition: pg}"], "slurm.extra"),
    (["slurm.extra={constraint: gpu32}"], "slurm.extra: option 'constraint': set by this package or by its own key"),
    (["slurm.gpu_type=v100"], "slurm.gpu_type: names a GPU type (v100) but no GPU is asked for"),
    (["slurm.gpus=1", "slurm.gpu_type=v100 x"], "slurm.gpu_type"),
    (["slurm.constraint=gpu 32"], "slurm.constraint: expected null or node features"),
    (["slurm.constraint=[]"], "slurm.constraint"),
    (['slurm.env_prefix="/x/\\"y"'], "slurm.env_prefix"),
    (['slurm.setup=["conda activate {env_prefix}"]'], "slurm.setup: uses {env_prefix}"),
    (["slurm.colour=red"], "unknown key slurm.colour"),
    (["slurm.profile=summit"], "slurm.profile: unknown profile 'summit'; expected one of local, speed"),
    (["slurm.profile=speed", "slurm.mem=null"], "slurm.mem: required by profile speed"),
    (["slurm.profile=speed", "slurm.partition=null"], "slurm.partition: required by profile speed"),
]


@pytest.mark.parametrize("overrides,message", REFUSED)
def test_refused_values_exit_2_with_one_error_line_before_anything_is_written(smoke_yaml, tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), *overrides, "--cluster", "slurm", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "results").exists()


def test_a_broken_profile_file_is_refused(tmp_path, smoke_yaml, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text((ROOT / "jobs/profiles/local.yaml").read_text().replace("cpus: null", "cpus: 0"))
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), f"slurm.profile={bad}", "--cluster", "local"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"{bad}: cpus: expected null or an integer >= 1" in err[0], err


def test_auto_is_local_without_sbatch(smoke_yaml, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "have_slurm", lambda: False)
    assert sweep_main([str(smoke_yaml), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "| cluster local |" in out and "no sbatch script" in out


def test_cluster_slurm_without_sbatch_is_refused(smoke_yaml, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "have_slurm", lambda: False)
    with pytest.raises(SystemExit) as e:
        sweep_main([str(smoke_yaml), "--cluster", "slurm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--cluster slurm: sbatch not found" in err[0]
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------------------------
# the sbatch script of the Speed profile, pinned: as it is, and asking for the V100s (typed gres, feature)
GOLDEN_V100 = ROOT / "tests" / "golden" / "sbatch_speed_v100.sh"
V100 = ["slurm.gpu_type=v100", "slurm.constraint=gpu32"]


def speed_script(smoke_yaml: Path, tmp_path: Path, overrides: list[str] = []) -> str:
    sweep = load_sweep(smoke_yaml, ["slurm.profile=speed", *overrides])
    folder = tmp_path / "results" / "smoke" / "logs" / "20250101-000000-000000-1"
    text = submit.sbatch_script(sweep, profiles.resolve(sweep.slurm), folder, len(sweep.runs()))
    return text.replace(str(folder), "<LOG_DIR>").replace(str(ROOT), "<REPO>").replace(sys.executable, "<PYTHON>")


@pytest.mark.parametrize(
    "golden, overrides, lines",
    [
        (GOLDEN, [], ["#SBATCH --gpus=1", "#SBATCH --constraint=gpu16"]),
        (GOLDEN_V100, V100, ["#SBATCH --gpus=v100:1", "#SBATCH --constraint=gpu32"]),
    ],
)
def test_speed_sbatch_script_matches_the_golden_file(smoke_yaml, tmp_path, golden, overrides, lines):
    GOLDEN = golden
    text = speed_script(smoke_yaml, tmp_path, overrides)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        # A golden file that rewrites itself in CI compares the output with itself: refuse.
        assert os.environ.get("CI", "").lower() not in ("1", "true"), "UPDATE_GOLDEN=1 is refused when CI=true"
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
        pytest.skip(f"rewrote {GOLDEN.relative_to(ROOT)}: review the diff, then run the test again without UPDATE_GOLDEN")
    assert GOLDEN.exists(), f"{GOLDEN} is missing; create it with: UPDATE_GOLDEN=1 pytest tests/test_slurm.py -k golden"
    assert text == GOLDEN.read_text(), (
        f"the sbatch script for jobs/profiles/speed.yaml differs from {GOLDEN.relative_to(ROOT)}; if the change is "
        "intended, refresh it with: UPDATE_GOLDEN=1 pytest tests/test_slurm.py -k golden  (and review the diff)"
    )
    assert not any(line.startswith("#SBATCH --wckey") for line in text.splitlines())
    for line in (
        *lines,
        "#SBATCH --partition=pg",
        "#SBATCH --mem=32G",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --time=1440",
        "#SBATCH --requeue",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --array=0-11%4",
    ):
        assert line in text.splitlines(), line


# ----------------------------------------------------------------------------------------------
# jobs.json: atomic, and written under a lock
def test_jobs_json_round_trip_and_atomic_replace(tmp_path, monkeypatch):
    records: dict = {}
    ledger.record_submission(records, "a-run", "5_0", "slurm", tmp_path / "5_0_0_log.out", tmp_path / "5_0_0_log.err")
    ledger.write(tmp_path, records)
    ledger.record_submission(records, "a-run", "9_3", "slurm", tmp_path / "o", tmp_path / "e")
    assert records["a-run"]["submissions"] == 2 and records["a-run"]["job_ids"] == ["5_0", "9_3"]
    before = ledger.jobs_path(tmp_path).read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        ledger.write(tmp_path, records)
    monkeypatch.undo()
    assert ledger.jobs_path(tmp_path).read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.json"]  # no temp file left
    assert ledger.read(tmp_path)["a-run"]["job_id"] == "5_0"
    ledger.jobs_path(tmp_path).write_text("{ damaged")
    assert ledger.read(tmp_path) == {}


def test_lock_excludes_a_second_holder(tmp_path):
    order = []

    def holder():
        with ledger.locked(tmp_path, wait_note=False):
            order.append("first in")
            time.sleep(0.5)
            order.append("first out")

    t = threading.Thread(target=holder)
    t.start()
    while not order:
        time.sleep(0.01)
    t0 = time.monotonic()
    with ledger.locked(tmp_path, wait_note=False):
        order.append("second in")
        waited = time.monotonic() - t0
    t.join()
    assert order == ["first in", "first out", "second in"] and waited > 0.3


# ----------------------------------------------------------------------------------------------
# The job callable under submitit's own job runner (`python -m submitit.core._submit`), as the
# local executor runs it: USR2 -> checkpoint() -> requeue; SIGTERM -> checkpoint -> exit 75.
def _submitit_job(tmp_path: Path, smoke_yaml: Path, name: str):
    sweep = load_sweep(smoke_yaml, ["output=" + str(tmp_path / name), "train.epochs=8", "train.checkpoint_every=1"])
    spec = sweep.run("resnet18-sgd-random-t0")
    folder = tmp_path / name / "submitit"
    folder.mkdir(parents=True)
    delayed = submitit.helpers.DelayedSubmission(RunJob(spec, sweep.run_dir(spec.run_id), threads=1))
    delayed.set_timeout(60, 3)
    delayed.dump(folder / "77_submitted.pkl")
    env = dict(
        os.environ,
        SUBMITIT_EXECUTOR="local",
        SUBMITIT_LOCAL_JOB_ID="77",
        SUBMITIT_LOCAL_GLOBALID="0",
        SUBMITIT_LOCAL_LOCALID="0",
        SUBMITIT_LOCAL_NTASKS="1",
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, "-u", "-m", "submitit.core._submit", str(folder)]
    return sweep.run_dir(spec.run_id), folder, cmd, env


@pytest.mark.parametrize("sig,code", [(signal.SIGUSR2, 144), (signal.SIGTERM, EXIT_INTERRUPTED)])
def test_job_interrupted_then_started_again_finishes_and_reads_as_success(tmp_path, smoke_yaml, sig, code):
    run_dir, folder, cmd, env = _submitit_job(tmp_path, smoke_yaml, sig.name)
    log = open(tmp_path / "job.log", "w")
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not list(run_dir.glob("ckpt-*.pt")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(sig)
    assert p.wait(timeout=60) == code, (tmp_path / "job.log").read_text()
    text = (tmp_path / "job.log").read_text()
    assert f"interrupted by {sig.name}" in text and not (run_dir / "DONE").exists()
    assert not (folder / "77_0_result.pkl").exists()  # no result yet: the job is not over
    if sig == signal.SIGUSR2:  # submitit called our checkpoint() and replaced the pickle with it
        assert "checkpoint(): requeueing" in text and "Requeued job 77" in text
        assert submitit.helpers.DelayedSubmission.load(folder / "77_submitted.pkl").function.requeues == 1
    # started again (SLURM's requeue, the local controller's restart): resumes and finishes
    assert subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=120).returncode == 0
    text = (tmp_path / "job.log").read_text()
    assert "resumed at cycle" in text and (run_dir / "DONE").exists()
    with open(folder / "77_0_result.pkl", "rb") as f:
        assert pickle.load(f) == ("success", "done")
    assert json.loads((run_dir / "run.json").read_text())["restarts"] == 1


def test_usr2_after_the_run_finished_does_not_requeue_the_job(tmp_path, smoke_yaml, capsys):
    """The time-limit warning can land while a finished job's interpreter shuts down; handed to
    submitit it would requeue a DONE run (seen on the CI cluster: the job read PENDING, not
    COMPLETED). After the run, the job keeps its own USR2 handler; inside a chain it restores
    submitit's, because the next run still needs the warning."""
    from submitit.core.job_environment import SignalHandler

    calls = []

    class Submitit(SignalHandler):  # what process_job installs, without its job environment
        def __init__(self):
            pass

        def checkpoint_and_try_requeue(self, signum, frame=None):
            calls.append(signum)

    sweep = load_sweep(smoke_yaml, ["output=" + str(tmp_path), "train.epochs=1", "al.cycles=2"])
    spec = sweep.run("resnet18-sgd-random-t0")
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        signal.signal(signal.SIGUSR2, Submitit().checkpoint_and_try_requeue)
        assert RunJob(spec, sweep.run_dir(spec.run_id), threads=1).call(last=False) == "done"
        os.kill(os.getpid(), signal.SIGUSR2)  # between two runs of a chain: submitit must hear it
        assert calls == [signal.SIGUSR2]
        assert RunJob(spec, sweep.run_dir(spec.run_id), threads=1)() == "already done"
        os.kill(os.getpid(), signal.SIGUSR2)  # after the job's last run: logged, not requeued
        assert calls == [signal.SIGUSR2]
        assert "SIGUSR2 after run resnet18-sgd-random-t0 finished" in capsys.readouterr().out
    finally:
        signal.signal(signal.SIGUSR2, previous)


# ----------------------------------------------------------------------------------------------
# one backend interface: the runs are grouped into tasks once, and --cluster local honours runs_per_task
def test_local_backend_packs_runs_per_task_into_its_core_slots(smoke_yaml, monkeypatch):
    from types import SimpleNamespace

    from slurm.job import RunChain
    from slurm.sweep import BACKENDS
    from slurm.pack import PackJob

    sweep = load_sweep(smoke_yaml, [*SMALL, "grid.trial=[0,1,2]", "slurm.runs_per_task=2"])  # 6 runs: 3 tasks of 2
    plan = make_plan(sweep, {}, {})
    assert [len(t) for t in plan.tasks(2)] == [2, 2, 2] and sum(plan.tasks(4), []) == plan.to_submit
    runner = BACKENDS["local"](sweep, profiles.resolve(sweep.slurm), False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert runner.layout(3) == (2, 2)  # 2 slots x 2 runs x 1 thread each: runs x threads <= cores
    submitted = []

    def submit(fn):
        submitted.append(fn)
        paths = SimpleNamespace(stdout=Path(f"/x/{len(submitted)}.out"), stderr=Path(f"/x/{len(submitted)}.err"))
        return SimpleNamespace(job_id=str(len(submitted)), paths=paths)

    monkeypatch.setattr(runner, "executor", lambda folder: SimpleNamespace(submit=submit))
    records: dict = {}
    assert len(runner.submit(plan, records)) == 6
    assert isinstance(submitted[0], RunChain) and all(isinstance(j, PackJob) for j in submitted[0].jobs)
    assert isinstance(submitted[1], PackJob) and submitted[1].cpus == 2
    assert ledger.read(sweep.sweep_dir) == records
    first = plan.to_submit[0].run_id
    assert records[first]["shares_task_with"] == [plan.to_submit[1].run_id] and "logs/packed" in records[first]["log_out"]


# ----------------------------------------------------------------------------------------------
# local execution end to end: two `make sweep CLUSTER=local` at once start every run exactly once
def test_local_executor_two_at_once_each_run_once(smoke_yaml, tmp_path, python):
    cmd = [python, "-m", "slurm.sweep", str(smoke_yaml), *SMALL, "--cluster", "local", "--wait"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    elapsed = time.monotonic() - t0
    assert [p.returncode for p in procs] == [0, 0], outs
    sweep = load_sweep(smoke_yaml, SMALL)
    records = ledger.read(sweep.sweep_dir)
    assert sorted(records) == sorted(s.run_id for s in sweep.runs())
    for spec in sweep.runs():
        assert (sweep.run_dir(spec.run_id) / "DONE").exists()
        assert records[spec.run_id]["submissions"] == 1 and records[spec.run_id]["cluster"] == "local"
        assert json.loads((sweep.run_dir(spec.run_id) / "run.json").read_text())["restarts"] == 0
        assert json.loads((sweep.run_dir(spec.run_id) / "run.json").read_text())["provenance"]["torch_threads"] == max(
            1, os.cpu_count() // min(os.cpu_count(), 4)
        )
        log = (sweep.sweep_dir / "logs" / "runs" / f"{spec.run_id}.out").read_text()
        assert "\r" not in log and f"{spec.run_id} cycle 3/3 | labelled" in log and "img/s" in log and "ETA" in log
    started = sum(o.count(": started (local job") for o in outs)
    assert started == 4, outs
    assert any("runs done" in o and "ETA" in o for o in outs) and all("all runs DONE" in o for o in outs)
    # again: nothing to do
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "0 to submit, 4 skipped (4 DONE" in again.stdout, again.stdout
    assert elapsed < 300, f"local end-to-end took {elapsed:.0f}s (a hang guard, not a benchmark)"


def test_debug_cluster_runs_in_this_process(smoke_yaml, tmp_path, capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    overrides = ["grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "train.epochs=1"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the run uses this process's threads; one keeps it quick on a busy machine
    try:
        assert sweep_main([str(smoke_yaml), *overrides, "--cluster", "debug"]) == 0
    finally:
        torch.set_num_threads(threads)
    sweep = load_sweep(smoke_yaml, overrides)
    assert (sweep.run_dir("resnet18-sgd-random-t0") / "DONE").exists()
    assert ledger.read(sweep.sweep_dir)["resnet18-sgd-random-t0"]["cluster"] == "debug"
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored after the run


def test_status_lines_and_failed_run_log(smoke_yaml, tmp_path, capsys):
    from slurm.status import main as status_main

    sweep = load_sweep(smoke_yaml)
    a, b = sweep.runs()[0].run_id, sweep.runs()[1].run_id
    sweep.run_dir(a).mkdir(parents=True)
    row = {"run_id": a, "cycle": 1, "test_accuracy": 0.5}
    (sweep.run_dir(a) / "cycles.jsonl").write_text(json.dumps(row) + "\n")
    err = tmp_path / "log.err"
    err.write_text("".join(f"line {i}\n" for i in range(40)) + "RuntimeError: boom\n")
    records = {b: {"job_id": "999999", "cluster": "local", "log_err": str(err), "log_out": str(tmp_path / "log.out")}}
    ledger.write(sweep.sweep_dir, records)
    assert status_main([str(smoke_yaml)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("resnet18")}
    assert lines[a].split()[1:4] == ["STARTED", "1/3", "50.00%"]
    assert lines[b].split()[1:5] == ["EXITED", "0/3", "-", "999999"]
    assert "total: 12 runs:" in out and "cycles 1/36" in out
    assert f"last lines of {err}" in out and "  | RuntimeError: boom" in out and "  | line 39" in out and "line 5\n" not in out
