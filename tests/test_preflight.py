"""Preflight: a node that cannot serve a run says so before training (exit 78); precision by
compute capability; seeded tie-breaking; arrays within MaxArraySize; held runs; bad sweep bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from al_core import preflight
from al_core.config import ConfigError, load_sweep
from al_core.preflight import NodeError, NodeReport, check, gpu_expected, resolve_precision, serves
from al_core.strategies import top_k
from slurm import held, submit
from slurm.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "smoke.yaml"
CU126 = preflight.BUILD_ARCHS["cu126"]
CU130 = preflight.BUILD_ARCHS["cu130"]


@pytest.mark.parametrize(
    "cap, cu126, cu130, auto, bf16_ok",
    [
        ("6.1", True, False, "fp32", False),  # Tesla P6 (Speed's pg): cu126's sm_60 cubins, no bf16
        ("7.0", True, False, "fp32", False),  # V100: cu126 only, no bf16
        ("7.5", True, True, "fp32", False),  # T4
        ("8.0", True, True, "bf16", True),  # A100
        ("8.9", True, True, "bf16", True),  # RTX 6000 Ada: sm_86 cubins run on 8.9
        ("9.0", True, True, "bf16", True),  # H100
    ],
)
def test_capability_serving_and_precision(cap, cu126, cu130, auto, bf16_ok):
    assert serves(CU126, cap) is cu126
    assert serves(CU130, cap) is cu130
    assert resolve_precision("auto", "cuda", cap) == auto
    assert resolve_precision("fp32", "cuda", cap) == "fp32"
    if bf16_ok:
        assert resolve_precision("bf16", "cuda", cap) == "bf16"
    else:
        with pytest.raises(NodeError, match="no native bf16"):
            resolve_precision("bf16", "cuda", cap)


def test_ptx_serves_newer_devices_and_cubins_do_not_cross_majors():
    assert serves(["compute_70"], "9.0") and not serves(["compute_80"], "7.5")
    assert not serves(["sm_80"], "9.0") and not serves(["sm_86"], "8.0")
    assert resolve_precision("auto", "cpu") == resolve_precision("bf16", "cpu") == "fp32"


def _report(**kw) -> NodeReport:
    base = dict(
        host="node7",
        torch="2.14.1+cu130",
        build_cuda="13.0",
        build_archs=list(CU130),
        cuda_available=True,
        gpu="Tesla V100-SXM2-32GB",
        capability="7.0",
        served=False,
        native_bf16=False,
        precision_auto="fp32",
        gpu_expected=True,
    )
    base.update(kw)
    return NodeReport(**base)


def test_gpu_asked_for_but_none_visible_names_the_node_and_what_to_do():
    r = _report(cuda_available=False, gpu=None, capability=None, served=None, native_bf16=None)
    with pytest.raises(NodeError) as e:
        check("auto", "auto", env={"CUDA_VISIBLE_DEVICES": "0"}, report=r)
    msg = str(e.value)
    assert "node node7" in msg and "asked for a GPU" in msg and "CUDA_VISIBLE_DEVICES=0" in msg and "2.14.1+cu130" in msg


def test_a_build_without_kernels_for_the_gpu_is_refused_with_the_fix():
    with pytest.raises(NodeError, match=r"Tesla V100.*compute capability 7\.0.*no kernels.*cu126"):
        check("auto", "auto", report=_report())
    ok = _report(build_archs=list(CU126), served=True)
    assert check("auto", "auto", report=ok) is ok
    with pytest.raises(NodeError, match="node node7: GPU Tesla V100.*no native bf16"):
        check("auto", "bf16", report=ok)


def test_cpu_nodes_pass_unless_a_gpu_was_asked_for():
    cpu = _report(cuda_available=False, gpu=None, capability=None, served=None, gpu_expected=False)
    assert check("auto", "auto", report=cpu) is cpu
    with pytest.raises(NodeError):
        check("cuda", "auto", report=cpu)


def test_gpu_expected_from_the_profile_or_slurm():
    assert not gpu_expected({})
    assert gpu_expected({"AL_EXPECT_GPU": "1"})
    assert gpu_expected({"SLURM_GPUS_ON_NODE": "1"}) and gpu_expected({"SLURM_JOB_GPUS": "0"})
    assert not gpu_expected({"SLURM_GPUS_ON_NODE": "0", "AL_EXPECT_GPU": "0"})


def test_run_cli_exits_78_with_one_error_line_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    env = {**__import__("os").environ, "AL_EXPECT_GPU": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, "-m", "al_core.run", str(SMOKE), f"output={out}", "--run", "resnet18-sgd-random-t0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 78, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: node ") and "asked for a GPU" in lines[0]
    assert not out.exists()


def test_missing_dataset_exits_78_before_the_run_directory_exists(tmp_path):
    out = tmp_path / "results"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "al_core.run",
            str(ROOT / "jobs" / "cifar10.yaml"),
            f"output={out}",
            f"dataset.root={tmp_path / 'nodata'}",
            "--run",
            "resnet18-sgd-random-t0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 78, p.stderr
    assert p.stderr.count("\n") == 1 and "make data" in p.stderr
    assert not out.exists()


def test_ties_are_broken_by_a_seeded_order_independent_of_candidate_order():
    cand = np.arange(100, 300)
    scores = np.where(cand % 3 == 0, 1.0, 0.5)  # 67 candidates tie at the top
    pick = lambda c, s: top_k(s, c, 20, np.random.default_rng(7))  # noqa: E731
    a = pick(cand, scores)
    perm = np.random.default_rng(1).permutation(len(cand))
    b = pick(cand[perm], scores[perm])
    assert list(a) == list(b)
    assert set(a) <= set(cand[scores == 1.0])
    assert sorted(a) != list(cand[scores == 1.0][:20]), "not lowest-index first"
    assert list(pick(cand, scores)) == list(a), "same seed, same picks"
    assert list(top_k(scores, cand, 20, np.random.default_rng(8))) != list(a)


def test_binary_sweep_file_is_one_error_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="is not text"):
        load_sweep(bad)
    for module in ("al_core.run", "slurm.sweep"):
        args = [sys.executable, "-m", module, str(bad)] + (["--run", "x"] if module == "al_core.run" else ["--dry-run"])
        p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, (module, p.stderr)
        assert "Traceback" not in p.stderr


def test_arrays_are_split_at_max_array_size():
    assert [len(c) for c in submit.array_chunks(20, 8)] == [8, 8, 4]
    assert [len(c) for c in submit.array_chunks(5, 1001)] == [5]
    assert sum((list(c) for c in submit.array_chunks(17, 4)), []) == list(range(17))


def test_held_runs_are_skipped_until_retry(tmp_path):
    sweep = load_sweep(SMOKE, [f"output={tmp_path}"])
    run_id = sweep.runs()[0].run_id
    held.hold(sweep.sweep_dir, run_id, "node n1: the job asked for a GPU but no CUDA device is visible")
    holds = held.read(sweep.sweep_dir)
    plan = make_plan(sweep, {}, {}, holds)
    d = next(d for d in plan.decisions if d.run_id == run_id)
    assert not d.submit and d.reason.startswith("HELD") and d in plan.held and d not in plan.active
    assert "1 held" in plan.summary() and "--retry-failed" in plan.held_note() and "no CUDA device" in plan.held_note()
    retry = make_plan(sweep, {}, {}, holds, retry_failed=True)
    assert next(d for d in retry.decisions if d.run_id == run_id).submit and not retry.held
    held.release(sweep.sweep_dir, [run_id])
    assert held.read(sweep.sweep_dir) == {}


def test_sweep_refuses_to_submit_when_the_dataset_is_missing(tmp_path):
    cmd = [sys.executable, "-m", "slurm.sweep", str(ROOT / "jobs" / "cifar10.yaml"), f"output={tmp_path / 'r'}"]
    cmd += [f"dataset.root={tmp_path / 'none'}", "slurm.profile=local", "--cluster", "local"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("error: dataset cifar10 not found") and "nothing submitted" in p.stderr
    assert not (tmp_path / "r").exists()
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert dry.returncode == 0 and "warning: dataset cifar10 not found" in dry.stdout


def test_profile_torch_build_must_cover_its_gpus():
    from slurm.profiles import resolve

    assert resolve({"profile": "speed"}).torch_build == "cu126"
    with pytest.raises(ConfigError, match=r"torch_build.*no kernels for compute capability 6\.1, 7\.0"):
        resolve({"profile": "speed", "torch_build": "cu130"})
    with pytest.raises(ConfigError, match="torch_build"):
        resolve({"profile": "speed", "torch_build": "cu999"})


def test_gpu_check_runs_every_step_at_toy_size_on_a_cpu(tmp_path, capsys):
    from bench import gpu_check

    out = tmp_path / "gc.json"
    rc = gpu_check.main(["--quick", "--device", "cpu", "--skip", "tests", "bench", "--json", str(out)])
    p = capsys.readouterr()
    assert rc == 0, p.err[-2000:]
    result = json.loads(out.read_text())
    run = result["run"]
    assert [c["cycle"] for c in run["cycles"]] == [1, 2, 3] and run["config"]["precision"] == "fp32"
    assert run["projected_10_cycle_s"] > sum(c["train_time_s"] for c in run["cycles"])
    assert "| projected 10-cycle run |" in p.out and result["node"]["host"]
    pack = result["pack"]  # bench.bench_pack: K = 1 and 2 processes training on the one device
    assert pack["rc"] == 0, pack["tail"]
    ks = pack["raw"]["models"]["resnet18"]["k"]
    assert set(ks) == {"1", "2"} and all(r["aggregate_img_per_s"] > 0 for r in ks.values())
    assert len(ks["2"]["per_run_img_per_s"]) == 2 and ks["1"]["score_img_per_s"] > 0
    assert pack["raw"]["projection"]["runs"] == 40 and "| runs per GPU, resnet18 |" in p.out


def test_train_device_cpu_is_allowed_where_a_gpu_was_expected():
    r = _report(cuda_available=False, gpu=None, capability=None, served=None, native_bf16=None)
    assert check("cpu", "auto", report=r) is r


def test_keys_added_today_leave_a_default_runs_recorded_config_as_it_was(tmp_path):
    d = load_sweep(SMOKE).runs()[0].config.to_dict()
    for section, key in (
        ("train", "score_precision"),
        ("train", "tf32"),
        ("train", "tensorboard"),
        ("train", "dropout"),
        ("train", "cuda_graphs"),
        ("dataset", "path"),
        ("dataset", "size"),
        ("dataset", "pad"),
        ("dataset", "flip"),
        ("dataset", "test_fraction"),
    ):
        assert key not in d[section], (section, key)
    changed = load_sweep(SMOKE, ["train.tf32=true", "dataset.pad=0"]).runs()[0].config.to_dict()
    assert changed["train"]["tf32"] is True and changed["dataset"]["pad"] == 0


def test_packed_logs_live_in_their_sweep(tmp_path):
    from slurm.pack import packed_logs

    sweep = load_sweep(SMOKE, [f"output={tmp_path}"])
    out, err = packed_logs(sweep.run_dir("r1"), "r1")
    assert out.parent == (sweep.sweep_dir / "logs" / "packed").resolve() and err.name == "r1.err"


def test_a_chain_goes_on_past_a_run_its_node_cannot_serve(tmp_path):
    from slurm.job import RunChain, RunJob

    sweep = load_sweep(
        SMOKE,
        [
            f"output={tmp_path}",
            "grid.strategy=[random]",
            "grid.optimizer=[sgd]",
            "grid.trial=[0]",
            "train.epochs=1",
            "al.cycles=1",
        ],
    )
    good = sweep.runs()[0]
    cifar = load_sweep(ROOT / "jobs" / "cifar10.yaml", [f"output={tmp_path}", f"dataset.root={tmp_path / 'none'}"])
    bad = cifar.runs()[0]
    chain = RunChain([RunJob(bad, cifar.run_dir(bad.run_id), threads=1), RunJob(good, sweep.run_dir(good.run_id), threads=1)])
    with pytest.raises(RuntimeError, match=f"1 of 2 runs failed: {bad.run_id}"):
        chain()
    assert (sweep.run_dir(good.run_id) / "DONE").exists()
    assert bad.run_id in held.read(cifar.sweep_dir) and not cifar.run_dir(bad.run_id).exists()
