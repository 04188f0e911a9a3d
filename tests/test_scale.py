"""A thousand runs: what the login-node commands were made faster with (jobs.json's encoding and
lazy fsync, the log links made by a thread, the grid not copied per run), `--hold`, and
bench/bench_scale.py at a small size on the real cluster (marked `slurm`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from al_core.config import load_sweep
from bench import bench_scale
from slurm import ledger, profiles, submit
from slurm.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# jobs.json
def test_jobs_json_is_one_line_per_run_and_reads_back(tmp_path):
    records = {
        "b": {"job_id": "7_1", "cluster": "slurm", "job_ids": ["7_1"], "log_out": "/x/o", "log_err": "/x/e"},
        "a": {"job_id": "7_0", "cluster": "slurm", "job_ids": ["7_0"], "log_out": "/x/o", "log_err": "/x/e"},
    }
    ledger.write(tmp_path, records)
    text = ledger.jobs_path(tmp_path).read_text()
    assert json.loads(text) == records and list(json.loads(text)) == ["a", "b"]
    assert len(text.splitlines()) == 2 + len(records)
    assert ledger.read(tmp_path) == records
    ledger.write(tmp_path, {}, durable=False)
    assert json.loads(ledger.jobs_path(tmp_path).read_text()) == {}


def test_jobs_json_encodes_a_record_again_when_it_changes_in_place(tmp_path):
    rec = {"job_id": "7_0", "cluster": "slurm", "job_ids": ["7_0"], "submissions": 1}
    records = {"r": rec}
    ledger.write(tmp_path, records, durable=False)
    rec["job_ids"].append("9_0")  # in place: a cache keyed by identity would miss it
    rec["job_id"] = "9_0"
    ledger.write(tmp_path, records)
    assert ledger.read(tmp_path)["r"]["job_ids"] == ["7_0", "9_0"]
    assert ledger.read(tmp_path)["r"]["job_id"] == "9_0"
    ledger.record_submission(records, "r", "11_0", "slurm", Path("o"), Path("e"))
    ledger.write(tmp_path, records)
    assert ledger.read(tmp_path)["r"]["job_ids"] == ["7_0", "9_0", "11_0"]


# ----------------------------------------------------------------------------------------------
# --hold
def test_hold_adds_sbatch_hold_and_only_then(smoke_yaml, tmp_path):
    sweep = load_sweep(smoke_yaml)
    resources = profiles.resolve(sweep.slurm)
    plain = submit.sbatch_script(sweep, resources, tmp_path, 6)
    held = submit.sbatch_script(sweep, resources, tmp_path, 6, hold=True)
    assert "--hold" not in plain
    assert "#SBATCH --hold" in held
    assert sorted(held.splitlines()) == sorted([*plain.splitlines(), "#SBATCH --hold"])
    assert "requeue" in submit.executor_parameters(sweep, resources, hold=True)["additional_parameters"]


# ----------------------------------------------------------------------------------------------
# submission of many arrays, with a stand-in for submitit
class _FakeExecutor:
    next_id = [100]

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def batch(self):
        yield

    def submit(self, fn):
        jid = f"{self.next_id[0]}_{len(list(self.folder.glob('*')))}"
        (self.folder / jid).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / jid).write_text("")
        paths = SimpleNamespace(stdout=self.folder / f"{jid}_0_log.out", stderr=self.folder / f"{jid}_0_log.err")
        return SimpleNamespace(job_id=jid, paths=paths)


def test_many_arrays_are_all_recorded_and_linked(smoke_yaml, monkeypatch):
    sweep = load_sweep(smoke_yaml, ["grid.trial=[0,1,2,3]"])  # 24 runs
    folders = []

    def executor(sweep_, resources, folder, hold=False):
        folders.append(folder)
        _FakeExecutor.next_id[0] += 1
        return _FakeExecutor(folder)

    monkeypatch.setattr(submit, "slurm_executor", executor)
    plan = make_plan(sweep, {}, {})
    records: dict = {}
    submitted = submit.submit_slurm(sweep, profiles.resolve(sweep.slurm), plan, records, max_array_size=5, allowance=None)
    assert len(submitted) == 24 and len(folders) == 5  # arrays of 5, 5, 5, 5, 4
    on_disk = ledger.read(sweep.sweep_dir)
    assert on_disk == records and set(on_disk) == {s.run_id for s in sweep.runs()}
    links = sweep.sweep_dir / "logs" / "runs"
    for d, job_id in submitted:
        for suffix in (".out", ".err"):
            link = links / f"{d.run_id}{suffix}"
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))
            assert (links / os.readlink(link)).resolve() == Path(records[d.run_id][f"log_{suffix[1:]}"]).resolve()
            assert job_id in os.readlink(link)
    # A second submission of the same runs moves the links to the new jobs.
    again = submit.submit_slurm(sweep, profiles.resolve(sweep.slurm), plan, records, max_array_size=8, allowance=None)
    first = again[0][0].run_id
    assert again[0][1] in os.readlink(links / f"{first}.out")
    assert ledger.read(sweep.sweep_dir)[first]["submissions"] == 2


def test_runs_of_a_large_grid_keep_their_axes(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["grid.trial=[0,1,2]", "grid.train.width=[4,8]"])
    specs = sweep.runs()
    assert [s.config.train.width for s in specs[:2]] == [4, 8]
    assert sweep.raw["grid"]["trial"] == [0, 1, 2] and sweep.raw["grid"]["train.width"] == [4, 8]
    assert sweep.raw["train"]["width"] == 4  # the sweep's own section is not changed by a run's axis


# ----------------------------------------------------------------------------------------------
# the benchmark
def test_bench_sweep_has_the_asked_number_of_runs(tmp_path):
    for n in (20, 7):
        path, overrides = bench_scale.sweep_file(tmp_path / str(n), n, "bench-scale-test")
        assert len(load_sweep(path, overrides).runs()) == n


def test_bench_table_names_every_figure_and_its_target():
    text = bench_scale.table({"submit": 3.0, "status": 6.0, "report": 1.0}, 20)
    assert "met" in text and "MISSED" in text and "skipped" in text
    assert len(text.splitlines()) == 5


@pytest.mark.slurm
def test_bench_scale_runs_at_a_small_size(tmp_path):
    out = tmp_path / "scale.json"
    cmd = [sys.executable, "-m", "bench.bench_scale", "--runs", "20", "--repeat", "1", "--cycles", "2", "--json", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr + p.stdout
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {"submit", "status", "resweep", "report"}
    assert all(v > 0 for v in result["median_s"].values())
    assert result["max_array_size"] and result["cluster_skipped"] is None
    for label in ("plan + submit", "status", "re-sweep", "report"):
        assert label in p.stdout
