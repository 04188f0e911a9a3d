"""bench.bench_train at the tiniest sizes: every JSON field, positive numbers, BENCHMARKS.md by flag.

Speed is not asserted here (BENCHMARKS.md records it, stamped with the machine).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from al_core.data import DATASETS, load
from al_core.models import MODELS
from bench import _reference as ref
from bench import bench_train
from bench._machine import peak_flops_of, train_flops_per_image

ROOT = Path(__file__).resolve().parents[1]
TINY_SIZES = [
    "--quick",
    "--device",
    "cpu",
    "--width",
    "2",
    "--batch-size",
    "8",
    "--images",
    "16",
    "--data-images",
    "32",
    "--score-images",
    "24",
    "--score-batch-size",
    "16",
    "--reps",
    "2",
    "--warmup",
    "1",
    "--models",
    "resnet18,resnet50",
]
TINY = TINY_SIZES + ["--threads", "1"]

STAMP = (
    "host",
    "device",
    "device_type",
    "cpu",
    "cpu_cores",
    "torch_threads",
    "load_avg_1m",
    "torch",
    "torchvision",
    "cuda",
    "cudnn",
    "python",
    "git_commit",
    "date",
)
TIMING = ("img_per_s", "best_img_per_s", "images_per_rep", "median_s", "times_s")
PATH = ("precision", "memory_format", "optimizer", "compiled", "backend", "train", "score")


def _positive(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    repo_md = ROOT / "BENCHMARKS.md"
    before = repo_md.read_bytes() if repo_md.exists() else None
    argv = TINY + ["--json", str(out / "r.json"), "--markdown", str(out / "B.md")]
    threads = torch.get_num_threads()
    assert bench_train.main(argv) == 0
    assert torch.get_num_threads() == threads  # --threads does not leak into the calling process
    after = repo_md.read_bytes() if repo_md.exists() else None
    return out, json.loads((out / "r.json").read_text()), before, after


def test_json_has_every_field_with_positive_numbers(tiny_run):
    _, r, _, _ = tiny_run
    assert r["benchmark"] == "bench_train" and r["schema"] == bench_train.SCHEMA
    assert set(STAMP) <= set(r["stamp"]) and r["stamp"]["device"] == "cpu" and r["stamp"]["torch"] == torch.__version__
    assert r["command"].startswith("python -m bench.bench_train --quick")
    assert r["config"]["models"] == ["resnet18", "resnet50"] and r["config"]["width"] == 2 and r["config"]["images"] == 16
    assert r["peak_flops"] is None  # a CPU: MFU n/a
    assert _positive(r["wall_s"])

    dp = r["data_path"]
    assert dp["batch_size"] == 8 and dp["images"] == 32 and _positive(dp["ratio"])
    for side in ("project", "reference"):
        assert set(TIMING) <= set(dp[side])
        assert _positive(dp[side]["img_per_s"]) and dp[side]["best_img_per_s"] >= dp[side]["img_per_s"]
        assert dp[side]["images_per_rep"] == 32
        assert len(dp[side]["times_s"]) == 2 and all(_positive(t) for t in dp[side]["times_s"])

    assert list(r["models"]) == ["resnet18", "resnet50"]
    for name, e in r["models"].items():
        assert e["train_flops_per_image"] == pytest.approx(train_flops_per_image(name, 2))
        assert e["score_flops_per_image"] == pytest.approx(e["train_flops_per_image"] / 3)
        assert _positive(e["train_ratio"]) and _positive(e["score_ratio"])
        for side in ("project", "reference"):
            s = e[side]
            assert set(PATH) <= set(s) and s["precision"] == "fp32"
            for phase in ("train", "score"):
                t = s[phase]
                assert set(TIMING + ("peak_mem_bytes", "mfu")) <= set(t), (name, side, phase)
                assert _positive(t["img_per_s"]) and _positive(t["median_s"])
                assert t["images_per_rep"] == (16 if phase == "train" else 24)  # scoring: --score-images
                assert t["mfu"] is None
                if r["memory_kind"] is None:
                    assert t["peak_mem_bytes"] is None
                else:
                    assert isinstance(t["peak_mem_bytes"], int) and t["peak_mem_bytes"] > 0
        assert e["train_ratio"] == pytest.approx(e["project"]["train"]["img_per_s"] / e["reference"]["train"]["img_per_s"])


def test_markdown_goes_to_the_flagged_path_only(tiny_run):
    out, r, before, after = tiny_run
    assert before == after, "the benchmark wrote to the repository's BENCHMARKS.md despite --markdown"
    text = (out / "B.md").read_text()
    assert text.startswith("# Benchmarks") and text.count("\n## ") == 1
    for needle in (
        "CPU only",
        f"torch {torch.__version__}",
        r["command"],
        str(out / "r.json"),
        "| resnet18 | project |",
        "| resnet50 | reference |",
        "**ratio**",
        "Data path alone",
        "MFU: n/a",
    ):
        assert needle in text, needle


def test_markdown_appends_sections_under_one_header(tmp_path):
    path = tmp_path / "sub" / "B.md"
    bench_train.append_markdown(path, "## first\n\nbody\n")
    bench_train.append_markdown(path, "## second\n")
    text = path.read_text()
    assert text.count("# Benchmarks") == 1 and text.index("## first") < text.index("## second")
    assert "body\n\n## second" in text


def test_no_markdown_and_default_json_path(tmp_path, monkeypatch):
    md = tmp_path / "B.md"
    assert (
        bench_train.main(
            TINY_SIZES
            + ["--models", "resnet18", "--reps", "1", "--json", str(tmp_path / "r.json"), "--markdown", str(md), "--no-markdown"]
        )
        == 0
    )
    assert not md.exists() and (tmp_path / "r.json").is_file()
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["stamp"]["torch_threads"] == bench_train.CPU_THREADS  # the CPU default
    r["stamp"].update(host="node-07.cluster", device="NVIDIA H100 80GB HBM3", date="2025-03-04T05:06:07+00:00")
    path = bench_train.default_json_path(r)
    assert path == ROOT / "bench" / "results" / "node-07-cluster-nvidia-h100-80gb-hbm3-20250304-050607.json"


def test_bad_flags_are_refused_with_the_known_names(capsys):
    with pytest.raises(SystemExit) as e:
        bench_train.parse_args(["--models", "resnet18,vgg16"])
    assert e.value.code == 2
    assert "vgg16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--reps", "0"])
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--images", "129", "--batch-size", "128"])  # a last batch of one


def test_sizes_default_by_device_and_flags_override():
    a = bench_train.parse_args(["--device", "cpu"])
    assert (a.width, a.batch_size, a.images, a.reps) == tuple(
        bench_train.SIZES["cpu"][k] for k in ("width", "batch_size", "images", "reps")
    )
    assert a.models == list(bench_train.BENCH_MODELS)
    b = bench_train.parse_args(["--device", "cpu", "--quick", "--width", "8"])
    assert b.width == 8 and b.images == bench_train.SIZES["quick"]["images"]


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_training_flops_constants_match_the_flop_counter(name):
    """3 x the counted forward FLOPs at 32x32; width 64 exactly, width 16 within the stem's share."""
    for width, tol in ((64, 0.002), (16, 0.015)):
        model = MODELS.get(name)(width=width).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        assert 3 * counter.get_total_flops() == pytest.approx(train_flops_per_image(name, width), rel=tol)


def test_device_peaks_by_name():
    assert peak_flops_of("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_of("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_of("NVIDIA H200") == 989e12
    assert peak_flops_of("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_of("Tesla V100-SXM2-32GB") == 125e12
    assert peak_flops_of("NVIDIA RTX 6000 Ada Generation") == 364e12
    assert peak_flops_of("NVIDIA GeForce RTX 3090") is None


def test_device_data_is_built_as_al_core_load_builds_it(tmp_path):
    """The bench's in-memory DeviceData has the statistics and padding of al_core.data.load."""
    spec = DATASETS.get("synthetic")
    pool_x, pool_y, _, _ = spec.load(tmp_path)
    mine = bench_train.device_data(pool_x.transpose(0, 2, 3, 1), pool_y, torch.device("cpu"), pad=spec.pad)
    theirs = load("synthetic", tmp_path, torch.device("cpu"))
    torch.testing.assert_close(mine.scale, theirs.scale)
    torch.testing.assert_close(mine.shift, theirs.shift)
    assert torch.equal(mine.padded, theirs.padded) and torch.equal(mine.pool_y, theirs.pool_y)


def test_reference_dataset_is_torchvision_style():
    images, labels = bench_train.random_images(6)
    ds = ref.InMemoryCIFAR(images, labels.tolist(), ref.test_transform())
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == labels[3]
    raw = torch.from_numpy(images[3]).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(ref.CIFAR_MEAN)[:, None, None], torch.tensor(ref.CIFAR_STD)[:, None, None]
    torch.testing.assert_close(x, (raw - mean) / std)
    batch, _ = next(iter(ref.train_loader(ref.InMemoryCIFAR(images, labels.tolist(), ref.train_transform()), 4, 0, False)))
    assert batch.shape == (4, 3, 32, 32) and np.isfinite(batch.numpy()).all()


# ----------------------------------------------------------------------------------------------
# bench.bench_pack: the projection's arithmetic and the flags (the K-process run itself is
# exercised by tests/test_preflight.py's gpu-check test, which runs its pack step).
def test_pack_projection_adds_cycles_and_divides_by_the_measured_speedup(tmp_path):
    from bench import bench_pack

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: s\noutput: out\ndataset: {name: cifar10, root: data}\n"
        "grid: {model: [resnet18, resnet34], optimizer: [sgd], strategy: [learning_loss, random], trial: [0]}\n"
        "al: {cycles: 3, initial_size: 1000, query_size: 1000, subset: 10000}\ntrain: {epochs: 10}\n"
    )
    models = {
        "resnet18": {
            "k": {"1": {"aggregate_img_per_s": 1000.0, "score_img_per_s": 10000.0}, "2": {"aggregate_img_per_s": 1600.0}}
        }
    }
    pj = bench_pack.project(sweep, models)
    assert pj["runs"] == 2 and pj["runs_without_a_measured_model"] == 2  # resnet34 was not measured
    train = 10 * (1000 + 2000 + 3000) / 1000.0  # epochs x labelled images / rate, per cycle
    evaluate = 3 * 10000 / 10000.0
    select = 2 * 10000 / 10000.0  # cycles 2 and 3 score the 10,000-sample subset; random scores nothing
    lossy, rand = train + evaluate + select, train + evaluate
    assert pj["gpu_hours_by_k"]["1"] == round((lossy + rand) / 3600, 2)
    assert pj["gpu_hours_by_k"]["2"] == round((lossy + rand) / 1.6 / 3600, 2)
    assert pj["run_minutes_at_k1"]["resnet18"] == round((lossy + rand) / 2 / 60, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--k", "0"], "--k"),
        (["--models", "vgg"], "--models"),
        (["--device", "cpu", "--cuda-graphs"], "--cuda-graphs"),
        (["--sweep", "/nonexistent.yaml"], "--sweep"),
    ],
)
def test_pack_bench_refuses_bad_flags(argv, message, capsys):
    from bench import bench_pack

    with pytest.raises(SystemExit) as e:
        bench_pack.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_pack_projection_charges_each_cycle_the_rate_fitted_at_its_size(tmp_path):
    from bench import bench_pack

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: s\noutput: out\ndataset: {name: cifar10, root: data}\n"
        "grid: {model: [resnet18], optimizer: [sgd], strategy: [random], trial: [0]}\n"
        "al: {cycles: 3, initial_size: 1000, query_size: 1000}\ntrain: {epochs: 10}\n"
    )
    # An epoch takes 0.5 s + 1 ms per image: 667 img/s at 1,000 labels, 909 img/s at 5,000.
    k1 = {"aggregate_img_per_s": 1000 / 1.5, "score_img_per_s": 10000.0, "epoch_s_by_size": {"1000": 1.5, "5000": 5.5}}
    fit = bench_pack.epoch_time_fit(k1)
    assert fit(3000) == pytest.approx(3.5) and fit(1000) == pytest.approx(1.5)
    pj = bench_pack.project(sweep, {"resnet18": {"k": {"1": k1}}})
    train = 10 * (1.5 + 2.5 + 3.5)  # each cycle at its own size, not 1,000's rate
    assert pj["gpu_hours_by_k"]["1"] == round((train + 3 * 10000 / 10000.0) / 3600, 2)
    assert pj["run_minutes_at_k1"]["resnet18"] == round((train + 3.0) / 60, 2)
    # One size measured (or an old result): that size's rate for every cycle, as before.
    assert bench_pack.epoch_time_fit({"aggregate_img_per_s": 500.0})(2000) == pytest.approx(4.0)
    # Noise that would make the fixed part negative: per-image cost through the origin.
    assert bench_pack.epoch_time_fit({"epoch_s_by_size": {"1000": 1.0, "2000": 1.5, "4000": 5.0}})(0) >= 0
