"""Several runs on one device: aggregate training images/s for K concurrent runs, and the study's
GPU-hours projected from it.

K processes (K = 1, 2, 4 by default) each train their own model on their own data as a run does
(the project's training path: uint8 pool on the device, on-device augmentation, the fused
optimizer on CUDA, `train.cuda_graphs` with `--cuda-graphs`), start together at a barrier and
time the same number of passes. The aggregate is every image trained divided by the span from
the first start to the last finish. A pass is one epoch of `--images` labelled samples (1,000:
the first cycle, whose 8 steps per epoch are the most launch-bound), so the K = 1 figure is the
slowest per-image rate of a run. With K = 1, each model's scoring rate is measured too, and its
training rate at further labelled-set sizes (`--sizes`).

The projection (`--sweep`, default jobs/cifar10.yaml) adds up, for every run of the sweep, its
cycles' training (epochs x labelled images / training rate at K = 1), selection (scored images /
scoring rate; none for random) and evaluation (test images / scoring rate), and divides the total
by the measured packing speed-up (aggregate at K / aggregate at 1) for each K. An epoch's time is
fitted over the sizes measured at K = 1 as a fixed part (launches, the merged last batch, the
per-epoch plan) plus a per-image part, t(n) = a + b * n (least squares), so each cycle is
charged the rate of its own labelled-set size: the small first cycles are launch-bound on a GPU,
the large later ones are not. It is an estimate, not a measurement of the study; data loading,
start-up and checkpoints are left out.

    python -m bench.bench_pack                       # sizes for the device found
    python -m bench.bench_pack --quick --json /tmp/p.json --no-markdown
    python -m bench.bench_pack --k 1 2 4 8 --models resnet18 --cuda-graphs
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_mod
import shlex
import sys
import time
import traceback
from pathlib import Path

import torch

from bench._machine import ROOT, PeakMemory, stamp, sync
from bench.bench_train import _rel, default_json_path, save

BENCH_MODELS = ("resnet18", "resnet34", "resnet50")
SCHEMA = 1
SIZES = {
    # A GPU: the study's width, batch and first labelled set; enough passes for a few seconds per K.
    # --sizes: cycles 1, 4 and 10 of jobs/cifar10.yaml.
    "cuda": {"width": 64, "batch_size": 128, "images": 1000, "passes": 60, "warmup": 5, "score_images": 10240},
    # A CPU: narrow models, short passes (the code path, not a GPU figure).
    "cpu": {"width": 8, "batch_size": 64, "images": 256, "passes": 2, "warmup": 1, "score_images": 1024},
    "quick": {"width": 4, "batch_size": 16, "images": 32, "passes": 1, "warmup": 1, "score_images": 32},
}
# Labelled-set sizes at which K = 1 also times its training (as many images per size as the main
# measurement: passes x images / size epochs, at least one), for the projection's fit.
SIZES_MEASURED = {"cuda": [4000, 10000], "cpu": [1024], "quick": [64]}
TEST_IMAGES = 10000  # CIFAR-10's test set, evaluated every cycle


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_pack", description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4], help="concurrent runs per device (default 1 2 4)")
    p.add_argument(
        "--models", nargs="+", default=None, help=f"models (default on a GPU: {','.join(BENCH_MODELS)}; on a CPU: resnet18)"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto: bf16 on GPUs with native bf16, else fp32 (as train.precision: auto)",
    )
    p.add_argument("--cuda-graphs", action="store_true", help="train with train.cuda_graphs (CUDA only)")
    p.add_argument("--quick", action="store_true", help="the tiniest sizes (seconds; for tests)")
    for key, help_ in (
        ("width", "channels of the first stage"),
        ("batch_size", "images per step"),
        ("images", "labelled images per pass (one epoch)"),
        ("passes", "timed passes per run"),
        ("warmup", "untimed passes per run before the barrier"),
        ("score_images", "images per scoring measurement (K = 1)"),
    ):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, help=help_)
    p.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=None,
        help="further labelled-set sizes timed at K = 1 for the projection (default GPU 4000 10000, CPU 1024)",
    )
    p.add_argument("--sweep", type=Path, default=ROOT / "jobs" / "cifar10.yaml", help="the study to project")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to each K")
    p.add_argument("--json", type=Path, help="result file (default bench/results/pack-<host>-<time>.json)")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-markdown", action="store_true")
    args = p.parse_args(argv)
    if any(k < 1 for k in args.k):
        p.error(f"--k: expected positive counts, got {args.k}")
    args.k = sorted(set(args.k) | {1})  # the speed-up is relative to K = 1
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible; expected auto or cpu")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.device = "cuda" if cuda else "cpu"
    args.models = [m for item in (args.models or (BENCH_MODELS if cuda else ("resnet18",))) for m in item.split(",") if m]
    unknown = [m for m in args.models if m not in BENCH_MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(BENCH_MODELS)}")
    if args.cuda_graphs and not cuda:
        p.error("--cuda-graphs: needs a CUDA device; none is visible")
    for key, value in SIZES["quick" if args.quick else args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        if getattr(args, key) < (0 if key == "warmup" else 1):
            p.error(f"--{key.replace('_', '-')}: expected a positive number, got {getattr(args, key)}")
    if args.sizes is None:
        args.sizes = SIZES_MEASURED["quick" if args.quick else args.device]
    if any(n < 2 for n in args.sizes):
        p.error(f"--sizes: expected labelled-set sizes of at least 2, got {args.sizes}")
    args.sizes = sorted(set(args.sizes) - {args.images})
    if not args.sweep.exists():
        p.error(f"--sweep {args.sweep}: no such file; expected a sweep YAML (jobs/cifar10.yaml)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# ----------------------------------------------------------------------------------------------
def worker(conf: dict, barrier, results) -> None:
    """One run's training loop on the shared device; reports its own clock span and images."""
    try:
        results.put(_work(conf, barrier))
    except Exception:  # noqa: BLE001 - the parent reports it; a worker must never hang the barrier
        barrier.abort()
        results.put({"index": conf["index"], "error": traceback.format_exc()})


def _work(conf: dict, barrier) -> dict:
    import itertools

    import numpy as np

    from al_core.optim import OPTIMIZERS, make_optimizer
    from al_core.train import GraphedStep, autocast, eval_batch_size, score_pool, train_step
    from bench.bench_train import build, device_data, project_epoch, random_images

    torch.set_num_threads(conf["threads"])
    dev = torch.device(conf["device"])
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    sizes = conf["sizes"] if conf["score"] else []
    images, labels = random_images(max(conf["images"], conf["score_images"], *sizes), seed=conf["index"])
    data = device_data(images, labels, dev)
    model, lossnet = build(conf["model"], conf["width"], dev, channels_last=cuda)
    opt = make_optimizer("sgd", list(model.parameters()) + list(lossnet.parameters()), dict(OPTIMIZERS.get("sgd").defaults), dev)
    amp = autocast(dev, conf["precision"])
    graphed = GraphedStep(model, lossnet, opt, conf["batch_size"], 1.0, 1.0, conf["precision"]) if conf["cuda_graphs"] else None
    epochs = itertools.count()

    def step(x, y):
        return graphed(x, y, False) if graphed is not None else train_step(model, lossnet, opt, x, y, False, 1.0, 1.0, amp)

    def train_pass(n: int = conf["images"]) -> int:
        labelled = torch.arange(n)
        return project_epoch(model, lossnet, data, labelled, conf["index"], next(epochs), conf["batch_size"], step)

    mem = PeakMemory(dev)
    mem.reset()
    for _ in range(conf["warmup"]):
        train_pass()
    sync(dev)
    barrier.wait(timeout=conf["timeout"])
    t0 = time.monotonic()
    seen = sum(train_pass() for _ in range(conf["passes"]))
    sync(dev)
    t1 = time.monotonic()
    out = {
        "index": conf["index"],
        "start": t0,
        "end": t1,
        "images": seen,
        "img_per_s": seen / (t1 - t0),
        "peak_mem_bytes": mem.read(),
    }
    if conf["score"]:
        out["epoch_s_by_size"] = {conf["images"]: (t1 - t0) / conf["passes"]}
        for n in sizes:
            reps = max(1, conf["passes"] * conf["images"] // n)
            train_pass(n)  # warm-up at this size
            sync(dev)
            s0 = time.monotonic()
            for _ in range(reps):
                train_pass(n)
            sync(dev)
            out["epoch_s_by_size"][n] = (time.monotonic() - s0) / reps
        idx = np.arange(conf["score_images"])
        bs = eval_batch_size("auto", dev)  # as a run with train.eval_batch_size: auto scores
        score_pool(model, lossnet, data, idx, bs, amp)  # warm-up
        sync(dev)
        s0 = time.monotonic()
        score_pool(model, lossnet, data, idx, bs, amp)
        sync(dev)
        out["score_img_per_s"] = conf["score_images"] / (time.monotonic() - s0)
    return out


def run_k(args, model: str, k: int, precision: str) -> dict:
    """K workers on the device at once; the aggregate over their common span."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    barrier, results = ctx.Barrier(k), ctx.Queue()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // k)  # as a packed task gives each run cpus / K threads
    procs = []
    for i in range(k):
        conf = {
            "index": i,
            "model": model,
            "device": args.device,
            "precision": precision,
            "threads": threads,
            "cuda_graphs": args.cuda_graphs,
            "score": k == 1,
            "timeout": args.timeout,
            "sizes": args.sizes,
            **{key: getattr(args, key) for key in ("width", "batch_size", "images", "passes", "warmup", "score_images")},
        }
        proc = ctx.Process(target=worker, args=(conf, barrier, results), daemon=True)
        proc.start()
        procs.append(proc)
    outs, deadline = [], time.monotonic() + args.timeout
    try:
        while len(outs) < k:
            try:
                outs.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
            except queue_mod.Empty:
                raise RuntimeError(f"{model} K={k}: no result within --timeout {args.timeout:.0f} s") from None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"{model} K={k}: a worker failed:\n{errors[0]}")
    span = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    result = {
        "k": k,
        "threads_per_run": threads,
        "aggregate_img_per_s": sum(o["images"] for o in outs) / span,
        "per_run_img_per_s": [round(o["img_per_s"], 1) for o in outs],
        "span_s": round(span, 3),
        "peak_mem_bytes_per_run": max((o["peak_mem_bytes"] or 0) for o in outs) or None,
    }
    if k == 1:
        result["score_img_per_s"] = outs[0]["score_img_per_s"]
        result["epoch_s_by_size"] = {str(n): round(s, 6) for n, s in sorted(outs[0]["epoch_s_by_size"].items())}
    return result


def epoch_time_fit(k1: dict):
    """Seconds per epoch of n labelled images at K = 1: t(n) = a + b * n fitted (least squares)
    over the sizes measured, a >= 0; with one size, that size's rate for every n."""
    points = sorted((int(n), s) for n, s in (k1.get("epoch_s_by_size") or {}).items())
    if len(points) < 2:
        rate = k1["aggregate_img_per_s"]
        return lambda n: n / rate
    xs = [float(n) for n, _ in points]
    ys = [s for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    if a < 0 or b <= 0:  # noise made the fixed part negative: per-image cost through the origin
        a, b = 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    return lambda n: a + b * n


# ----------------------------------------------------------------------------------------------
def project(sweep_path: Path, models: dict) -> dict:
    """GPU-hours of every run of `sweep_path` whose model was measured, at each measured K."""
    from al_core.config import load_sweep
    from al_core.data import DATASETS

    sweep = load_sweep(sweep_path)
    per_run_s, counted, skipped = {}, 0, 0
    for spec in sweep.runs():
        cfg = spec.config
        m = models.get(cfg.model)
        if m is None:
            skipped += 1
            continue
        epoch_s, score_rate = epoch_time_fit(m["k"]["1"]), m["k"]["1"]["score_img_per_s"]
        pool = DATASETS.get(cfg.dataset.name).pool_size
        al, seconds = cfg.al, 0.0
        for c in range(1, al.cycles + 1):
            n = al.initial_size + (c - 1) * al.query_size
            seconds += cfg.train.epochs * epoch_s(n) + TEST_IMAGES / score_rate
            if c > 1 and cfg.strategy != "random":
                scored = min(al.subset or pool, pool - (n - al.query_size))
                seconds += scored / score_rate
        per_run_s.setdefault(cfg.model, []).append(seconds)
        counted += 1
    by_k = {}
    for k in sorted({int(k) for m in models.values() for k in m["k"]}):
        hours = 0.0
        for model, secs in per_run_s.items():
            ks = models[model]["k"]
            speedup = ks[str(k)]["aggregate_img_per_s"] / ks["1"]["aggregate_img_per_s"] if str(k) in ks else None
            if speedup is None:
                break
            hours += sum(secs) / speedup / 3600
        else:
            by_k[str(k)] = round(hours, 2)
    return {
        "sweep": _rel(sweep_path),
        "runs": counted,
        "runs_without_a_measured_model": skipped,
        "run_minutes_at_k1": {m: round(sum(s) / len(s) / 60, 2) for m, s in per_run_s.items()},
        "gpu_hours_by_k": by_k,
    }


def run_bench(args) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(args.device)
    st = stamp(dev)
    if args.precision == "auto":
        native = dev.type == "cuda" and torch.cuda.get_device_capability(dev) >= (8, 0)
        args.precision = "bf16" if native else "fp32"
    print(
        f"bench_pack: {st['device']} ({st['cpu_cores']} cores) | torch {st['torch']} | {args.precision}"
        f"{', CUDA graphs' if args.cuda_graphs else ''} | width {args.width}, batch {args.batch_size}, "
        f"{args.images} images/pass, {args.passes} passes per run",
        flush=True,
    )
    models = {}
    for name in args.models:
        models[name] = {"k": {}}
        for k in args.k:
            r = run_k(args, name, k, args.precision)
            base = models[name]["k"].get("1", r)["aggregate_img_per_s"]
            r["speedup"] = r["aggregate_img_per_s"] / base
            models[name]["k"][str(k)] = r
            print(
                f"{name:9s} K={k}: {r['aggregate_img_per_s']:>10,.0f} img/s aggregate ({r['speedup']:.2f}x K=1)"
                f" | per run {', '.join(f'{v:,.0f}' for v in r['per_run_img_per_s'])}"
                + (f" | scoring {r['score_img_per_s']:,.0f} img/s" if k == 1 else "")
                + (
                    " | by size " + ", ".join(f"{int(n):,}: {int(n) / t:,.0f} img/s" for n, t in r["epoch_s_by_size"].items())
                    if k == 1
                    else ""
                ),
                flush=True,
            )
    projection = project(args.sweep, models)
    print(
        f"projected {projection['sweep']} ({projection['runs']} runs): "
        + ", ".join(f"K={k} {h:,.1f} device-h" for k, h in projection["gpu_hours_by_k"].items()),
        flush=True,
    )
    return {
        "benchmark": "bench_pack",
        "schema": SCHEMA,
        "stamp": st,
        "command": " ".join(["python -m bench.bench_pack", *map(shlex.quote, args.argv)]).strip(),
        "config": {
            k: getattr(args, k)
            for k in (
                "k",
                "models",
                "precision",
                "cuda_graphs",
                "width",
                "batch_size",
                "images",
                "passes",
                "warmup",
                "score_images",
                "sizes",
            )
        },
        "models": models,
        "projection": projection,
        "wall_s": time.perf_counter() - t0,
    }


def markdown_section(result: dict, json_path: Path | None) -> str:
    st, cfg, pj = result["stamp"], result["config"], result["projection"]
    gpu = st["device_type"] == "cuda"
    lines = [
        f"## {st['date'][:16].replace('T', ' ')} UTC: several runs per device, {st['device'] if gpu else 'CPU only, no GPU'}, "
        f"torch {st['torch']}",
        "",
        f"- Command: `{result['command']}` ({result['wall_s']:.0f} s)" + (f"; JSON: `{_rel(json_path)}`." if json_path else "."),
        f"- {cfg['precision']}{', CUDA graphs' if cfg['cuda_graphs'] else ''}; width {cfg['width']}, batch {cfg['batch_size']}, "
        f"{cfg['images']} labelled images per pass, {cfg['passes']} timed passes per run after {cfg['warmup']}; host "
        f"`{st['host']}`, {st['cpu']} ({st['cpu_cores']} cores); commit {st['git_commit'] or 'n/a'}.",
        "",
        "| model | K | aggregate train img/s | speed-up over K=1 | peak mem per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in result["models"].items():
        for k, r in m["k"].items():
            mem = r["peak_mem_bytes_per_run"]
            lines.append(
                f"| {name} | {k} | {r['aggregate_img_per_s']:,.0f} | {r['speedup']:.2f}x | "
                f"{'n/a' if mem is None else f'{mem / 2**20:,.0f} MiB'} |"
            )
    sized = [
        f"{name} " + ", ".join(f"{int(n):,}: {int(n) / t:,.0f} img/s" for n, t in m["k"]["1"].get("epoch_s_by_size", {}).items())
        for name, m in result["models"].items()
        if "1" in m["k"]
    ]
    lines += [
        "",
        "Training rate at K=1 by labelled-set size (one epoch): " + "; ".join(sized) + ".",
        "",
        f"Projected for `{pj['sweep']}` ({pj['runs']} runs with a measured model), from the K=1 rates above "
        "(an epoch's time fitted as a + b x labelled images over those sizes): "
        + ", ".join(f"K={k}: **{h:,.1f}** device-hours" for k, h in pj["gpu_hours_by_k"].items())
        + ". A projection, not a measurement of the study"
        + ("." if gpu else "; on a CPU it only exercises the code."),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    args = parse_args(argv)
    try:
        result = run_bench(args)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    json_path = args.json or default_json_path(result, prefix="pack-")
    save(result, json_path, None if args.no_markdown else args.markdown, markdown_section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
