"""GPU checks: placement, a bf16 training step, selection stable across two GPU runs, the benchmark.

Every test is `gpu`-marked: tests/conftest.py skips them where no CUDA device is visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from al_core.config import load_sweep
from al_core.data import load
from al_core.io import read_jsonl
from al_core.loop import Run, run
from al_core.models import MODELS, LossNet
from al_core.optim import OPTIMIZERS, make_optimizer
from al_core.train import autocast, epoch_plan, train_step

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "smoke.yaml"
MIN_OVERLAP = 0.9  # bf16 and cudnn.benchmark's algorithm choice may flip a few near-tied ranks
MAX_ACC_GAP = 0.05  # test accuracy, absolute


def quiet(_):
    pass


def gpu_spec(run_id: str, *overrides: str):
    return load_sweep(SMOKE, ["train.device=cuda", *overrides]).run(run_id)


def test_run_places_data_and_model_on_the_gpu_and_rows_name_it(tmp_path):
    r = Run(gpu_spec("resnet18-sgd-learning_loss-t0"), tmp_path / "run", log=quiet)
    assert r.execute() == "done"
    assert r.device.type == "cuda" and r.trainer.precision == "bf16"
    d = r.trainer.data
    for t in (d.pool_x, d.pool_y, d.test_x, d.test_y, d.scale, d.shift, d.padded):
        assert t.is_cuda
    model, lossnet = r.trainer.fresh_model(1)
    assert all(p.is_cuda for p in model.parameters()) and all(p.is_cuda for p in lossnet.parameters())
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    rows = read_jsonl(tmp_path / "run" / "cycles.jsonl")
    assert len(rows) == 3
    for row in rows:
        assert row["device"] == torch.cuda.get_device_name(0)
        assert isinstance(row["peak_mem_bytes"], int) and row["peak_mem_bytes"] > 0
        assert row["train_img_per_s"] > 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["provenance"]["precision"] == "bf16"


def test_bf16_training_step_gives_a_finite_loss_and_updates_every_weight(tmp_path):
    dev = torch.device("cuda")
    data = load("synthetic", tmp_path, dev)
    torch.manual_seed(0)
    model = MODELS.get("resnet18")(width=8).to(dev).to(memory_format=torch.channels_last)
    lossnet = LossNet(model.stage_channels).to(dev)
    params = list(model.parameters()) + list(lossnet.parameters())
    opt = make_optimizer("sgd", params, dict(OPTIMIZERS.get("sgd").defaults), dev)
    assert opt.defaults.get("fused") is True
    amp = autocast(dev, "bf16")
    plan = epoch_plan(data, torch.arange(64), 0, 1, 0, 32)
    idx, shifts, flips = plan.batch(0)
    x = data.train_batch(idx, shifts, flips).contiguous(memory_format=torch.channels_last)
    with amp:
        assert model(x)[0].dtype == torch.bfloat16  # the convolutions really run in bf16
    before = [p.detach().clone() for p in params]
    loss_sum, correct = train_step(model, lossnet, opt, x, data.pool_y[idx], False, 1.0, 1.0, amp)
    assert loss_sum.is_cuda and torch.isfinite(loss_sum) and loss_sum > 0
    assert 0 <= int(correct) <= 32
    for p, b in zip(params, before):
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
        assert not torch.equal(p, b)  # every parameter has a gradient (and weight decay)


@pytest.mark.parametrize("strategy", ["entropy", "learning_loss"])
def test_selection_on_the_gpu_is_stable_across_two_runs(tmp_path, strategy):
    spec = gpu_spec(f"resnet18-sgd-{strategy}-t0")
    a, b = [], []
    for rows, name in ((a, "a"), (b, "b")):
        assert run(spec, tmp_path / name, log=quiet) == "done"
        rows.extend(read_jsonl(tmp_path / name / "cycles.jsonl"))
    assert len(a) == len(b) == spec.config.al.cycles
    assert a[0]["queried"] == b[0]["queried"]  # cycle 1: the random initial set, no model involved
    for ra, rb in zip(a[1:], b[1:]):
        overlap = len(set(ra["queried"]) & set(rb["queried"])) / len(ra["queried"])
        assert overlap >= MIN_OVERLAP, f"cycle {ra['cycle']}: {overlap:.0%} of the queried indices agree"
    for ra, rb in zip(a, b):
        assert abs(ra["test_accuracy"] - rb["test_accuracy"]) <= MAX_ACC_GAP, (
            ra["cycle"],
            ra["test_accuracy"],
            rb["test_accuracy"],
        )


def test_benchmark_on_the_gpu_reports_device_memory_and_mfu(tmp_path):
    from bench import bench_train
    from bench._machine import peak_flops

    argv = [
        "--quick",
        "--device",
        "cuda",
        "--models",
        "resnet18",
        "--json",
        str(tmp_path / "r.json"),
        "--markdown",
        str(tmp_path / "B.md"),
    ]
    assert bench_train.main(argv) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["stamp"]["device"] == torch.cuda.get_device_name(0) and r["stamp"]["cuda"] == torch.version.cuda
    assert r["memory_kind"] == "cuda_max_allocated"
    e = r["models"]["resnet18"]
    assert (e["project"]["precision"], e["project"]["memory_format"]) == ("bf16", "channels_last")
    assert (e["reference"]["precision"], e["reference"]["memory_format"]) == ("fp32", "contiguous")
    known_peak = peak_flops(torch.device("cuda")) is not None
    for side in ("project", "reference"):
        for phase in ("train", "score"):
            t = e[side][phase]
            assert isinstance(t["peak_mem_bytes"], int) and t["peak_mem_bytes"] > 0
            assert t["img_per_s"] > 0
            assert (t["mfu"] is not None and 0 < t["mfu"] < 1) if known_peak else t["mfu"] is None
    assert torch.cuda.get_device_name(0) in (tmp_path / "B.md").read_text()


@pytest.fixture
def exact_cuda_arithmetic(monkeypatch):
    """Deterministic kernels, no TF32, no autotuning: without them two eager runs of the test below
    already differ by more than its tolerance (on an H200 with torch 2.11, BENCHMARKS.md)."""
    from al_core.train import set_deterministic

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    for name, value in (("allow_tf32", False), ("benchmark", False)):
        monkeypatch.setattr(torch.backends.cudnn, name, value)
    set_deterministic(True)
    yield
    set_deterministic(False)


def test_graphed_step_matches_the_eager_step_and_replays(tmp_path, exact_cuda_arithmetic):
    """train.cuda_graphs: the same weights after full and merged-last batches as train_step (fp32)."""
    from al_core.train import GraphedStep

    dev = torch.device("cuda")
    data = load("synthetic", tmp_path, dev)
    labelled = torch.arange(200)  # 128 + a merged remainder of 72: one replayed step, one eager step per epoch
    states = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = MODELS.get("resnet18")(width=8).to(dev).to(memory_format=torch.channels_last)
        lossnet = LossNet(model.stage_channels, 16).to(dev)
        opt = make_optimizer(
            "adamw", list(model.parameters()) + list(lossnet.parameters()), dict(OPTIMIZERS.get("adamw").defaults), dev
        )
        amp = autocast(dev, "fp32")
        step = GraphedStep(model, lossnet, opt, 128, 1.0, 1.0, "fp32") if graphed else None
        for epoch in range(3):
            plan = epoch_plan(data, labelled, 0, 1, epoch, 128)
            for i in range(plan.n_steps):
                x, y = plan.inputs(data, i, True)
                detach = epoch == 2
                s, _ = step(x, y, detach) if step else train_step(model, lossnet, opt, x, y, detach, 1.0, 1.0, amp)
                assert torch.isfinite(s)
        if step:
            assert step.replays == 3  # one full batch per epoch; the graph was captured again for detach
        states.append({k: v.float().clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        torch.testing.assert_close(states[1][k], states[0][k], rtol=1e-3, atol=1e-4, msg=k)


def test_run_with_cuda_graphs_trains_as_the_eager_run(tmp_path):
    rows = {}
    for graphs in ("false", "true"):
        r = Run(
            gpu_spec("resnet18-sgd-learning_loss-t0", f"train.cuda_graphs={graphs}", f"output={tmp_path / graphs}"),
            tmp_path / graphs / "run",
            log=quiet,
        )
        assert r.execute() == "done"
        rows[graphs] = read_jsonl(tmp_path / graphs / "run" / "cycles.jsonl")
    for a, b in zip(rows["false"], rows["true"]):
        assert abs(a["test_accuracy"] - b["test_accuracy"]) <= MAX_ACC_GAP
        assert a["n_labeled"] == b["n_labeled"]
