"""No file that another user of a shared folder could write is unpickled or run: a planted pickle in
a sweep's logs, a crafted CIFAR batch and a job file handed to a packed run's child create no
marker file; every deserialisation and dynamic import in the tree is listed in SECURITY.md."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from al_core.config import load_sweep
from al_core.data import DATASETS, DataError
from slurm import ledger, profiles, scheduler, submit
from slurm.plan import make_plan
from slurm.scheduler import JobState
from slurm.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["grid.optimizer=[sgd]", "grid.strategy=[random,entropy]", "grid.trial=[0,1]", "train.epochs=2"]


class Planted:
    """What another user could leave in a shared folder: unpickling it would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_bytes(marker: Path, protocol: int = 2) -> bytes:
    data = pickle.dumps(Planted(marker), protocol=protocol)
    assert not marker.exists()
    return data


def test_the_marker_pickle_would_run_its_code(tmp_path):
    """The check below would see code run: plain pickle.loads of the planted bytes creates the marker."""
    pickle.loads(planted_bytes(tmp_path / "ran"))
    assert (tmp_path / "ran").exists()


# ----------------------------------------------------------------------------------------------
# the ledger rebuild reads submitted.json, never submitit's pickles (dry run included)
@pytest.fixture
def sweep(smoke_yaml):
    return load_sweep(smoke_yaml, SMALL)


def test_a_planted_pickle_in_the_logs_runs_nothing_on_a_dry_run(sweep, smoke_yaml, monkeypatch, capsys, tmp_path):
    marker = tmp_path / "ran"
    folder = sweep.sweep_dir / "logs" / "20261201-000000-1"
    folder.mkdir(parents=True)
    ids = [s.run_id for s in sweep.runs()]
    ledger.record_array(folder, [(ids[0], "80_0", folder / "80_0_0_log.out", folder / "80_0_0_log.err")])
    (folder / "80_0_submitted.pkl").write_bytes(planted_bytes(marker))  # replaced by another user
    (folder / "80_1_submitted.pkl").write_bytes(planted_bytes(marker))  # a job with no record but a pickle
    ledger.jobs_path(sweep.sweep_dir).write_text("{ damaged")
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: {"80_0": JobState("RUNNING", "squeue")})
    monkeypatch.setattr(
        scheduler, "slurm_states", lambda ids, name=None, since_iso=None: {j: JobState("RUNNING", "squeue") for j in ids}
    )
    monkeypatch.setattr(scheduler, "max_array_size", lambda: 1001)
    assert sweep_main([str(smoke_yaml), *SMALL, "--cluster", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "rebuilt 1 record(s)" in out.err and "job 80_0 RUNNING" in out.out
    assert not marker.exists()
    # A held job known only by its pickle: refused in one line, and the pickle is still not opened.
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: {j: JobState("PENDING", "squeue") for j in ("80_0", "80_1")})
    with pytest.raises(SystemExit):
        sweep_main([str(smoke_yaml), *SMALL, "--cluster", "slurm", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "job 80_1" in err[0] and "no submission record" in err[0]
    assert not marker.exists()


class _Executor:
    """submitit's executor as far as a submission uses it (ids and log paths), no scheduler."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.n = folder, 0

    def batch(self):
        import contextlib

        return contextlib.nullcontext()

    def submit(self, fn):
        jid = f"90_{self.n}"
        self.n += 1
        paths = SimpleNamespace(stdout=self.folder / f"{jid}_0_log.out", stderr=self.folder / f"{jid}_0_log.err")
        return SimpleNamespace(job_id=jid, paths=paths)


def test_a_submission_records_its_jobs_runs_in_json_and_a_lost_ledger_is_rebuilt_from_it(sweep, monkeypatch):
    folders = []
    monkeypatch.setattr(submit, "slurm_executor", lambda s, r, folder, hold=False: folders.append(folder) or _Executor(folder))
    records: dict = {}
    submitted = submit.submit_slurm(sweep, profiles.resolve(sweep.slurm), make_plan(sweep, {}, {}), records, 1001, None)
    assert len(submitted) == 4 and len(folders) == 1
    record = json.loads((folders[0] / ledger.SUBMITTED_FILE).read_text())
    assert {j: sorted(runs) for j, runs in record["jobs"].items()} == {j: [d.run_id] for d, j in submitted}
    ledger.jobs_path(sweep.sweep_dir).unlink()
    monkeypatch.setattr(scheduler, "active_jobs", lambda name: {"90_1": JobState("RUNNING", "squeue")})
    rebuilt = ledger.recover(sweep.sweep_dir, submit.job_name(sweep), note=lambda s: None)
    run_id = submitted[1][0].run_id
    assert list(rebuilt) == [run_id] and rebuilt[run_id]["log_out"] == records[run_id]["log_out"]


# ----------------------------------------------------------------------------------------------
# CIFAR batches: a restricted unpickler, after torchvision's checksums
def cifar10(root: Path, n: int = 4) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((n, 3072), np.uint8), b"labels": list(range(n)), b"batch_label": name.encode()}
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
    return base


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_crafted_cifar_batch_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "ran"
    base = cifar10(tmp_path / "data")
    crafted = {b"data": Planted(marker), b"labels": [0]}
    (base / "data_batch_3").write_bytes(pickle.dumps(crafted, protocol=protocol))
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR batch: it names posix\.system"):
        DATASETS.get("cifar10").load(tmp_path / "data")
    assert not marker.exists()


def test_cifar_batches_of_numpy_scalars_and_of_the_wrong_shape(tmp_path):
    base = cifar10(tmp_path)
    scalars = {b"data": np.zeros((2, 3072), np.uint8), b"labels": list(np.arange(2, dtype=np.int64))}
    (base / "data_batch_2").write_bytes(pickle.dumps(scalars))  # numpy scalars, as numpy writes them
    px, py, _, _ = DATASETS.get("cifar10").load(tmp_path)
    assert len(px) == len(py) == 18
    (base / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match="test_batch: not a CIFAR batch"):
        DATASETS.get("cifar10").load(tmp_path)
    (base / "test_batch").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="test_batch: not a CIFAR batch"):
        DATASETS.get("cifar10").load(tmp_path)


# ----------------------------------------------------------------------------------------------
# a packed run's child takes its job from its stdin pipe, never from a file
def test_a_packed_child_refuses_a_job_file(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "0.pkl"
    path.write_bytes(planted_bytes(marker))
    p = subprocess.run([sys.executable, "-m", "slurm.pack", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# every deserialisation and dynamic import is listed in SECURITY.md
CALLS = re.compile(
    r"(?<![\w])((?:pickle\.loads?|\w*Unpickler|torch\.load|np\.load|numpy\.load|yaml\.(?:safe_|unsafe_|full_)?load(?:_all)?|"
    r"yaml_load|import_module|__import__|DelayedSubmission\.load|marshal\.loads?|shelve\.open|joblib\.load|"
    r"spec_from_file_location|exec_module|run_path|run_module)|(?<![.\w])(?:exec|eval))\s*\("
)
AUDITED = ("al_core", "slurm", "analysis", "bench", "tests")


def calls_in_tree() -> set[tuple[str, str]]:
    """(file, call) for every deserialisation or dynamic import in the project's Python files."""
    found = set()
    for top in AUDITED:
        for path in sorted((ROOT / top).rglob("*.py")):
            for m in CALLS.finditer(path.read_text()):
                found.add((path.relative_to(ROOT).as_posix(), m.group(1)))
    return found


def listed_in_security_md() -> set[tuple[str, str]]:
    """(file, call) of each row of SECURITY.md's table: | `file` | `call` | ... |."""
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|\s*`([^`(]+)\(?\)?`\s*\|", (ROOT / "SECURITY.md").read_text(), re.M)
    return set(rows)


def test_every_deserialisation_and_dynamic_import_is_listed_in_security_md():
    found, listed = calls_in_tree(), listed_in_security_md()
    assert found, "the search finds nothing: the pattern is broken"
    missing = sorted(found - listed)
    assert not missing, f"not in SECURITY.md (say what each reads and why it is safe): {missing}"
    gone = sorted(listed - found)
    assert not gone, f"SECURITY.md lists calls the tree no longer has: {gone}"


def test_a_packed_task_hands_each_child_its_job_through_a_pipe(smoke_yaml, tmp_path):
    from slurm.job import RunJob
    from slurm.pack import PackJob

    sweep = load_sweep(smoke_yaml, [f"output={tmp_path}", "al.cycles=1", "train.epochs=1"])
    spec = sweep.runs()[0]
    assert PackJob([RunJob(spec, sweep.run_dir(spec.run_id))], cpus=1).call(last=False) == "done"
    assert (sweep.run_dir(spec.run_id) / "DONE").exists()
    assert not list(tmp_path.rglob("*.pkl"))  # nothing written to disk to hand the job over
