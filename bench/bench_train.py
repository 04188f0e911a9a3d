"""Training and scoring throughput of the project's path against the original DataLoader + PIL path.

For each model: training images/s, scoring images/s and peak memory, for the project's path
(uint8 pool on the device, on-device crop/flip/normalise, bf16 autocast, channels_last and fused
SGD on CUDA) and for the reference path built as LL4AL builds it (torchvision-style dataset, PIL
transforms, DataLoader, fp32 NCHW, `.to(device)` per batch, two SGD optimizers), in one process,
timed side by side (every repetition a project pass, then a reference pass), with the ratio; plus the data path alone. Medians of `--reps` timed passes after `--warmup`.
Writes JSON (`--json`) and appends a section to BENCHMARKS.md (`--markdown`).

    python -m bench.bench_train                      # sizes for the device found (CPU: < 3 min)
    python -m bench.bench_train --quick --json /tmp/b.json --markdown /tmp/B.md
    python -m bench.bench_train --models resnet18 --images 20480 --reps 7
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import re
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from al_core.data import DatasetSpec
from al_core.data.device import DeviceData, from_arrays
from al_core.models import MODELS, LossNet
from al_core.optim import OPTIMIZERS, make_optimizer
from al_core.run import configure_threads
from al_core.train import EVAL_BATCH_AUTO, GraphedStep, autocast, epoch_plan, eval_batch_size, score_pool, train_epoch, train_step
from bench import _reference as ref
from bench._machine import ROOT, PeakMemory, mfu, peak_flops, repeat, side_by_side, stamp, train_flops_per_image

BENCH_MODELS = ("resnet18", "resnet34", "resnet50")
SIZE, CHANNELS, N_CLASSES = 32, 3, 10  # CIFAR-shaped random images
SCHEMA = 1

# Sizes per situation; every one can be overridden by its flag.
SIZES = {
    # A GPU: the study's width and batch, a pass long enough to hide launch and sync overheads.
    "cuda": {
        "width": 64,
        "batch_size": 128,
        "images": 10240,
        "data_images": 10240,
        "score_images": 10240,
        "reps": 5,
        "warmup": 2,
    },
    # A CPU: narrow models and short passes, so the whole benchmark stays under 3 minutes on 2 cores.
    # Scoring passes cover several batches (4,096 images: 64 of the CPU's auto batch, 32 of the
    # reference's 128), so the figure is the steady rate, not one batch's start-up.
    "cpu": {"width": 16, "batch_size": 128, "images": 256, "data_images": 4096, "score_images": 4096, "reps": 3, "warmup": 1},
    # --quick: the tiniest sizes that still exercise every path (a few seconds; for tests).
    "quick": {"width": 4, "batch_size": 16, "images": 32, "data_images": 64, "score_images": 64, "reps": 1, "warmup": 1},
}

# On a CPU both paths compute on one thread by default: the reference's PIL work runs in one
# process (DataLoader workers 0) too, and on shared cores an OpenMP barrier waiting for a thread
# that another process pre-empted made 2-thread passes up to 30x slower (2-core VM, BENCHMARKS.md).
CPU_THREADS = 1

# Backend flags of each path on CUDA. The project's are those al_core.loop sets; the reference
# keeps torch's defaults, as the original code does.
PROJECT_FLAGS = {"cudnn_benchmark": True, "tf32_matmul": False, "tf32_cudnn": False}  # train.tf32 defaults to false
REFERENCE_FLAGS = {"cudnn_benchmark": False, "tf32_matmul": False, "tf32_cudnn": True}


# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_train", description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", default=None, help=f"models, space- or comma-separated (default: {','.join(BENCH_MODELS)})"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    p.add_argument("--quick", action="store_true", help="the tiniest sizes (seconds); flags below still override")
    p.add_argument("--width", type=int, help="channels of the first stage (64 = the standard ResNet); default GPU 64, CPU 16")
    p.add_argument("--batch-size", type=int, help="training images per step, both paths (default 128)")
    p.add_argument("--images", type=int, help="images per timed training pass (default GPU 10240, CPU 256)")
    p.add_argument("--score-images", type=int, help="images per timed scoring pass, both paths (default GPU 10240, CPU 4096)")
    p.add_argument("--data-images", type=int, help="images per timed pass of the data path alone (default GPU 10240, CPU 4096)")
    p.add_argument(
        "--score-batch-size",
        type=int,
        help="project path: images per no-grad scoring batch (default: train.eval_batch_size auto for the device, "
        f"{EVAL_BATCH_AUTO}); the reference scores with --batch-size, as LL4AL does",
    )
    p.add_argument("--reps", type=int, help="timed passes; the median is reported (default GPU 5, CPU 3)")
    p.add_argument("--warmup", type=int, help="untimed passes first (default GPU 2, CPU 1)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default on a CPU: 1, see CPU_THREADS; on a GPU: "
        "AL_THREADS, else SLURM_CPUS_PER_TASK, else torch's default, as a job sets them)",
    )
    p.add_argument("--ref-workers", type=int, default=0, help="reference DataLoader workers (0, as LL4AL)")
    p.add_argument("--compile", action="store_true", help="project path: torch.compile the model (CUDA only)")
    p.add_argument("--json", type=Path, help="result file (default bench/results/<host>-<device>-<date>.json)")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="file the result section is appended to")
    p.add_argument("--no-markdown", action="store_true", help="do not append to --markdown")
    args = p.parse_args(argv)
    names = [m for item in (args.models or BENCH_MODELS) for m in item.split(",") if m]
    unknown = [m for m in names if m not in BENCH_MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(BENCH_MODELS)}")
    args.models = names
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible; expected auto or cpu")
    args.device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    sizes = SIZES["quick" if args.quick else args.device.type]
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        if getattr(args, key) < (0 if key == "warmup" else 1):
            p.error(f"--{key.replace('_', '-')}: expected a positive number, got {getattr(args, key)}")
    if args.batch_size < 2:
        p.error("--batch-size: expected at least 2 (BatchNorm cannot train on one image)")
    if args.images % args.batch_size == 1:
        p.error(
            f"--images {args.images}: leaves a last batch of one image, which BatchNorm cannot train on; "
            f"expected a count that is not 1 more than a multiple of --batch-size {args.batch_size}"
        )
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads: expected a positive number, got {args.threads}")
    if args.score_batch_size is None:
        args.score_batch_size = eval_batch_size("auto", args.device)  # as a run with the default resolves it
    elif args.score_batch_size < 1:
        p.error(f"--score-batch-size: expected a positive number, got {args.score_batch_size}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# ----------------------------------------------------------------------------------------------
def random_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-shaped random data: n x 32 x 32 x 3 uint8 (torchvision's HWC layout) and labels."""
    g = np.random.default_rng(seed)
    return g.integers(0, 256, size=(n, SIZE, SIZE, CHANNELS), dtype=np.uint8), g.integers(0, N_CLASSES, size=n)


def device_data(images_hwc: np.ndarray, labels: np.ndarray, device: torch.device, pad: int = 4) -> DeviceData:
    """`DeviceData` over in-memory images, built as `al_core.data.load` builds it (same statistics)."""
    x = np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2))  # NCHW, the layout of the CIFAR files
    n = len(x)
    spec = DatasetSpec("random-cifar", N_CLASSES, CHANNELS, SIZE, n, n, pad=pad, flip=True, load=lambda root: None)
    return from_arrays(spec, (x, labels, x, labels), device)


@contextlib.contextmanager
def backend_flags(device: torch.device, cudnn_benchmark: bool, tf32_matmul: bool, tf32_cudnn: bool):
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32_matmul
    torch.backends.cudnn.allow_tf32 = tf32_cudnn
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build(name: str, width: int, device: torch.device, channels_last: bool = False):
    """The model and its loss-prediction module, the same initial weights for both paths."""
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=N_CLASSES, in_channels=CHANNELS, width=width).to(device)
    lossnet = LossNet(model.stage_channels).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, lossnet


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# The project's path: the run loop's own epoch (al_core.train.train_epoch) and pool scoring.
def project_epoch(
    model, lossnet, data: DeviceData, labelled: torch.Tensor, trial: int, epoch: int, batch_size: int, step: Callable
) -> int:
    """One epoch as the run loop trains it (device accumulators, read once at the end); `step(x, y)`
    is `train_step` or a `GraphedStep`. Returns the images trained."""
    stretch = train_epoch(model, lossnet, data, labelled, trial, 1, epoch, batch_size, step, channels_last=data.pool_x.is_cuda)
    float(stretch.loss_sum), float(stretch.correct)  # the loop reads its accumulators once per epoch
    return stretch.seen


def flagged(dev: torch.device, flags: dict, fn: Callable[[], int]) -> Callable[[], int]:
    """`fn` run under its path's backend flags (the paths are timed in turn, each with its own)."""

    def call() -> int:
        with backend_flags(dev, **flags):
            return fn()

    return call


def project_passes(name: str, args, data: DeviceData) -> tuple[dict, dict[str, Callable[[], int]]]:
    """The project path's description and its timed passes: train (and train_cuda_graphs), score."""
    dev, cuda = args.device, args.device.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    amp = autocast(dev, precision)
    meta = {
        "precision": precision,
        "memory_format": "channels_last" if cuda else "contiguous",
        "optimizer": "sgd, fused" if cuda else "sgd",
        "compiled": bool(args.compile and cuda),
        "backend": PROJECT_FLAGS if cuda else None,
    }
    with backend_flags(dev, **PROJECT_FLAGS):
        model, lossnet = build(name, args.width, dev, channels_last=cuda)
        if args.compile and cuda:
            model.compile()
        opt = make_optimizer(
            "sgd", list(model.parameters()) + list(lossnet.parameters()), dict(OPTIMIZERS.get("sgd").defaults), dev
        )
        labelled = torch.arange(args.images)  # a CPU index tensor, as the loop passes it
        epochs = itertools.count()

        def eager(x, y):
            return train_step(model, lossnet, opt, x, y, False, 1.0, 1.0, amp)

        def train_pass(step=eager) -> int:
            return project_epoch(model, lossnet, data, labelled, 0, next(epochs), args.batch_size, step)

        pool_idx = np.arange(args.score_images)

        def score_pass() -> int:
            return score_pool(model, lossnet, data, pool_idx, args.score_batch_size, amp).probs.shape[0]

        passes = {"train": train_pass, "score": score_pass}
        if cuda and not args.compile:
            # train.cuda_graphs: the same passes with forward+backward replayed from a CUDA graph.
            graphed = GraphedStep(model, lossnet, opt, args.batch_size, 1.0, 1.0, precision)
            passes["train_cuda_graphs"] = lambda: train_pass(lambda x, y: graphed(x, y, False))
    return meta, {k: flagged(dev, PROJECT_FLAGS, f) for k, f in passes.items()}


def reference_passes(name: str, args, train_set: ref.InMemoryCIFAR, score_set: ref.InMemoryCIFAR):
    """The reference path (LL4AL's DataLoader + PIL, fp32, two SGD optimizers): description and passes."""
    dev, cuda = args.device, args.device.type == "cuda"
    meta = {
        "precision": "fp32",
        "memory_format": "contiguous",
        "optimizer": "2 x sgd",
        "compiled": False,
        "backend": REFERENCE_FLAGS if cuda else None,
    }
    with backend_flags(dev, **REFERENCE_FLAGS):
        model, lossnet = build(name, args.width, dev)
        opts = ref.optimizers(model, lossnet)
    loader = ref.train_loader(train_set, args.batch_size, args.ref_workers, pin_memory=cuda)
    sloader = ref.score_loader(score_set, args.batch_size, args.ref_workers, pin_memory=cuda)
    passes = {
        "train": lambda: ref.train_epoch(model, lossnet, opts, loader, dev),
        "score": lambda: ref.score(model, lossnet, sloader, dev)[0].shape[0],
    }
    return meta, {k: flagged(dev, REFERENCE_FLAGS, f) for k, f in passes.items()}


def compare(name: str, args, data: DeviceData, train_set, score_set, mem: PeakMemory) -> tuple[dict, dict]:
    """Both paths of one model, each phase timed side by side (bench._machine.side_by_side):
    rep by rep, a project pass then a reference pass, so drift in the machine's speed weighs on both."""
    project, p_passes = project_passes(name, args, data)
    reference, r_passes = reference_passes(name, args, train_set, score_set)
    for phase in ("train", "score"):
        timed = side_by_side({"project": p_passes[phase], "reference": r_passes[phase]}, args.reps, args.warmup, args.device, mem)
        project[phase], reference[phase] = timed["project"], timed["reference"]
    if "train_cuda_graphs" in p_passes:
        project["train_cuda_graphs"] = repeat(p_passes["train_cuda_graphs"], args.reps, args.warmup, args.device)
    return project, reference


def data_path(args, data: DeviceData, train_set: ref.InMemoryCIFAR) -> dict:
    """Gather + augment + normalise every batch of a pass on the device, against DataLoader + PIL."""
    dev, cuda = args.device, args.device.type == "cuda"
    labelled = torch.arange(args.data_images)
    epochs = itertools.count()

    def project_pass() -> int:
        plan = epoch_plan(data, labelled, 0, 1, next(epochs), args.batch_size)
        seen = 0
        for step in range(plan.n_steps):
            _, y = plan.inputs(data, step, cuda)  # images and labels, as the training loop gets them
            seen += y.shape[0]
        return seen

    loader = ref.train_loader(train_set, args.batch_size, args.ref_workers, pin_memory=cuda)
    project = repeat(project_pass, args.reps, args.warmup, dev)
    reference = repeat(lambda: ref.data_epoch(loader, dev), args.reps, args.warmup, dev)
    return {
        "batch_size": args.batch_size,
        "images": args.data_images,
        "project": project,
        "reference": reference,
        "ratio": project["img_per_s"] / reference["img_per_s"],
    }


# ----------------------------------------------------------------------------------------------
def run_bench(args) -> dict:
    t_start = time.perf_counter()
    dev = args.device
    peak = peak_flops(dev)
    st = stamp(dev)
    print(
        f"bench_train: {st['device']} ({st['cpu']}, {st['cpu_cores']} cores, torch threads {st['torch_threads']}) | torch {st['torch']} | "
        f"width {args.width}, batch {args.batch_size}, {args.images} images/training pass, {args.score_images}/scoring pass "
        f"(batch {args.score_batch_size} project, {args.batch_size} reference), median of {args.reps} after {args.warmup} warm-up",
        flush=True,
    )
    n = max(args.images, args.data_images, args.score_images)
    images, labels = random_images(n)
    data = device_data(images, labels, dev)
    targets = labels.tolist()
    train_set = ref.InMemoryCIFAR(images[: args.images], targets[: args.images], ref.train_transform())
    score_set = ref.InMemoryCIFAR(images[: args.score_images], targets[: args.score_images], ref.test_transform())
    data_set = ref.InMemoryCIFAR(images[: args.data_images], targets[: args.data_images], ref.train_transform())
    mem = PeakMemory(dev)

    dp = data_path(args, data, data_set)
    print(
        f"data path ({args.batch_size}/batch): project {dp['project']['img_per_s']:,.0f} img/s | "
        f"DataLoader+PIL {dp['reference']['img_per_s']:,.0f} img/s | {dp['ratio']:.1f}x",
        flush=True,
    )

    models = {}
    for name in args.models:
        flops = train_flops_per_image(name, args.width, SIZE)
        entry = {"train_flops_per_image": flops, "score_flops_per_image": flops / 3}
        entry["project"], entry["reference"] = compare(name, args, data, train_set, score_set, mem)
        _free(dev)  # both paths' models and optimizers went with compare's scope
        for path in ("project", "reference"):
            for phase, f in (("train", flops), ("score", flops / 3)):
                r = entry[path][phase]
                r["mfu"] = mfu(r["img_per_s"], f, peak)
        entry["train_ratio"] = entry["project"]["train"]["img_per_s"] / entry["reference"]["train"]["img_per_s"]
        entry["score_ratio"] = entry["project"]["score"]["img_per_s"] / entry["reference"]["score"]["img_per_s"]
        models[name] = entry
        for path in ("project", "reference"):
            r = entry[path]
            print(
                f"{name:9s} {path:9s} train {r['train']['img_per_s']:>10,.0f} img/s  MFU {_pct(r['train']['mfu']):>6s}  "
                f"peak {_mib(r['train']['peak_mem_bytes']):>10s} | score {r['score']['img_per_s']:>10,.0f} img/s  "
                f"MFU {_pct(r['score']['mfu']):>6s}  ({r['precision']}, {r['memory_format']})",
                flush=True,
            )
        print(f"{name:9s} ratio     train {entry['train_ratio']:.1f}x | score {entry['score_ratio']:.1f}x", flush=True)
        graphs = entry["project"].get("train_cuda_graphs")
        if graphs:
            entry["cuda_graphs_ratio"] = graphs["img_per_s"] / entry["project"]["train"]["img_per_s"]
            print(
                f"{name:9s} graphs    train {graphs['img_per_s']:>10,.0f} img/s  ({entry['cuda_graphs_ratio']:.2f}x eager)",
                flush=True,
            )

    config = {
        k: getattr(args, k)
        for k in (
            "models",
            "width",
            "batch_size",
            "images",
            "data_images",
            "score_images",
            "score_batch_size",
            "reps",
            "warmup",
            "ref_workers",
            "compile",
            "quick",
        )
    }
    return {
        "benchmark": "bench_train",
        "schema": SCHEMA,
        "stamp": st,
        "command": " ".join(["python -m bench.bench_train", *map(shlex.quote, args.argv)]).strip(),
        "config": config,
        "image_size": SIZE,
        "peak_flops": peak,
        "memory_kind": mem.kind,
        "data_path": dp,
        "models": models,
        "wall_s": time.perf_counter() - t_start,
    }


MEMORY_KINDS = {
    "cuda_max_allocated": "torch.cuda.max_memory_allocated over the phase (the resident pool included)",
    "process_peak_rss": "peak resident set of the whole process over the phase (Python and torch included)",
}


def default_json_path(result: dict, prefix: str = "") -> Path:
    st = result["stamp"]
    slug = lambda s: re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower() or "unknown"  # noqa: E731
    when = datetime.fromisoformat(st["date"]).astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return ROOT / "bench" / "results" / f"{prefix}{slug(st['host'])}-{slug(st['device'])}-{when}.json"


def save(result: dict, json_path: Path, markdown: Path | None, section: Callable[[dict, Path], str]) -> None:
    """The result as JSON at `json_path`; its section appended to `markdown` (None: not)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {json_path}")
    if markdown is not None:
        append_markdown(markdown, section(result, json_path))
        print(f"appended to {markdown}")


def markdown_section(result: dict, json_path: Path | None) -> str:
    st, cfg, dp = result["stamp"], result["config"], result["data_path"]
    gpu = st["device_type"] == "cuda"
    where = f"{st['device']}" if gpu else f"CPU only ({st['cpu']}, {st['cpu_cores']} cores), no GPU"
    threads = f"{st['torch_threads']} torch thread" + ("s" if st["torch_threads"] != 1 else "")
    memory = MEMORY_KINDS.get(result["memory_kind"], "n/a")
    lines = [
        f"## {st['date'][:16].replace('T', ' ')} UTC: {where}, torch {st['torch']}",
        "",
        f"- Machine: host `{st['host']}`, {st['cpu']} ({st['cpu_cores']} cores, {threads}, load average "
        f"{st['load_avg_1m']} at the start); device {st['device']}"
        + (f" (CUDA {st['cuda']}, cuDNN {st['cudnn']})" if gpu else "")
        + f"; torch {st['torch']}, torchvision {st['torchvision']}, Python {st['python']}; commit {st['git_commit'] or 'n/a'}"
        + (" with uncommitted changes." if st["git_dirty"] else "."),
        f"- Command: `{result['command']}` ({result['wall_s']:.0f} s)" + (f"; JSON: `{_rel(json_path)}`." if json_path else "."),
        f"- Sizes: {', '.join(cfg['models'])} at width {cfg['width']}, {result['image_size']}x{result['image_size']}; batch "
        f"{cfg['batch_size']}; {cfg['images']} images per timed training pass, "
        f"{cfg.get('score_images', cfg['images'])} per scoring pass (scoring batch {cfg['score_batch_size']} project, "
        f"{cfg['batch_size']} reference); median of {cfg['reps']} after {cfg['warmup']} warm-up; reference DataLoader workers "
        f"{cfg['ref_workers']}. Peak memory: {memory}.",
        "",
        "| model | path | precision | train img/s | score img/s | train peak mem | train MFU | score MFU |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in result["models"].items():
        for path in ("project", "reference"):
            r = e[path]
            lines.append(
                f"| {name} | {path} | {r['precision']}, {r['memory_format']} | {r['train']['img_per_s']:,.0f} | "
                f"{r['score']['img_per_s']:,.0f} | {_mib(r['train']['peak_mem_bytes'])} | {_pct(r['train']['mfu'])} | "
                f"{_pct(r['score']['mfu'])} |"
            )
        lines.append(f"| {name} | **ratio** | | **{e['train_ratio']:.1f}x** | **{e['score_ratio']:.1f}x** | | | |")
        if e.get("cuda_graphs_ratio"):
            g = e["project"]["train_cuda_graphs"]
            lines.append(
                f"| {name} | project, CUDA graphs | {e['project']['precision']} | {g['img_per_s']:,.0f} "
                f"({e['cuda_graphs_ratio']:.2f}x eager) | | | | |"
            )
    lines += [
        "",
        f"Data path alone ({dp['images']} images, batch {dp['batch_size']}): on-device gather + crop + flip + normalise "
        f"{dp['project']['img_per_s']:,.0f} img/s; DataLoader + PIL + `.to(device)` {dp['reference']['img_per_s']:,.0f} img/s: "
        f"**{dp['ratio']:.1f}x**.",
        "",
    ]
    if result["peak_flops"] is None:
        lines += ["MFU: n/a " + ("on a CPU (no peak to compare against)." if not gpu else "(peak of this GPU unknown)."), ""]
    return "\n".join(lines)


def append_markdown(path: Path, section: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if not old.strip():
        head = (
            "# Benchmarks\n\nSections appended by `make bench` (`python -m bench.bench_train`); each names its "
            "machine, device, torch version and command.\n\n"
        )
    else:
        head = "" if old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
    with open(path, "a") as f:
        f.write(head + section)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _mib(x: int | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.0f} MiB"


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        args = parse_args(argv)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        elif args.device.type == "cpu":
            torch.set_num_threads(CPU_THREADS)
        else:
            configure_threads()  # as a job does: AL_THREADS, else SLURM_CPUS_PER_TASK, else torch's default
        result = run_bench(args)
    finally:
        torch.set_num_threads(threads)  # main() may run inside another process (tests)
    save(result, args.json or default_json_path(result), None if args.no_markdown else args.markdown, markdown_section)
    print(f"bench_train: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
