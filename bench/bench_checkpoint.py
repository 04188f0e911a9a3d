"""Checkpoint cost: file size per model at width 64, save/verify time, and overhead against training.

    python -m bench.bench_checkpoint [--reps 5] [--width 32] [--images 1000] [--json out.json]

Sizes are of real checkpoints as the run loop writes them (model, loss-prediction module, SGD
momentum state, labelled indices). The overhead is measured side by side in one process: the
median time of one training epoch on `--images` 32x32 images at `--width`, and the median time to
write (atomically, fsynced) and to verify-load one checkpoint of that model.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from al_core import checkpoint
from al_core.models import MODELS, LossNet
from al_core.optim import make_optimizer
from al_core.registry import optimizer_params
from al_core.train import train_step


def state_for(
    name: str, width: int, n_labelled: int = 10000
) -> tuple[dict, torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    model = MODELS.get(name)(num_classes=10, in_channels=3, width=width)
    lossnet = LossNet(model.stage_channels, 128)
    opt = make_optimizer(
        "sgd", list(model.parameters()) + list(lossnet.parameters()), optimizer_params("sgd", {}, "optim"), torch.device("cpu")
    )
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    train_step(model, lossnet, opt, x, y, False, 1.0, 1.0, torch.autocast("cpu", enabled=False))  # momentum buffers exist
    state = {
        "run_id": "bench",
        "labelled": torch.arange(n_labelled),
        "queried": torch.arange(1000),
        "model": model.state_dict(),
        "lossnet": lossnet.state_dict(),
        "optimizer": opt.state_dict(),
        "accum": [0.0, 0.0, 0.0],
        "last_epoch": [0.0, 0.0],
        "timing": {"select_time_s": 0.0, "train_time_s": 0.0, "energy_j": None},
    }
    return state, model, lossnet, opt


def time_save(state: dict, reps: int) -> tuple[int, list[float], list[float]]:
    saves, loads, size = [], [], 0
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d)
        for i in range(reps):
            t0 = time.perf_counter()
            path = checkpoint.save(run_dir, checkpoint.Position(1, i + 1), "bench", state)
            saves.append(time.perf_counter() - t0)
            size = path.stat().st_size
            t0 = time.perf_counter()
            checkpoint.read(path, "bench")
            loads.append(time.perf_counter() - t0)
    return size, saves, loads


def time_epoch(model, lossnet, opt, images: int, batch: int, reps: int) -> list[float]:
    x_all, y_all = torch.randn(images, 3, 32, 32), torch.randint(0, 10, (images,))
    amp = torch.autocast("cpu", enabled=False)
    model.train()
    lossnet.train()
    times = []
    for _ in range(reps + 1):  # the first is warm-up
        t0 = time.perf_counter()
        for s in range(0, images, batch):
            train_step(model, lossnet, opt, x_all[s : s + batch], y_all[s : s + batch], False, 1.0, 1.0, amp)
        times.append(time.perf_counter() - t0)
    return times[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--width", type=int, default=32, help="width for the overhead measurement")
    p.add_argument("--images", type=int, default=1000, help="labelled images per epoch for the overhead measurement")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    out = {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sizes_width64": {},
        "overhead": {},
    }
    for name in MODELS.names():
        state = state_for(name, 64)[0]
        size, saves, loads = time_save(state, args.reps)
        out["sizes_width64"][name] = {
            "bytes": size,
            "save_s_median": statistics.median(saves),
            "verify_load_s_median": statistics.median(loads),
        }
        print(
            f"{name} width 64: checkpoint {size / 2**20:.1f} MiB, save {statistics.median(saves):.3f}s, "
            f"verify+load {statistics.median(loads):.3f}s (median of {args.reps})",
            flush=True,
        )
    state, model, lossnet, opt = state_for("resnet18", args.width)
    epochs = time_epoch(model, lossnet, opt, args.images, args.batch_size, args.reps)
    size, saves, _ = time_save(state, args.reps)
    epoch_s, save_s = statistics.median(epochs), statistics.median(saves)
    every, floor_s = 10, 120.0  # the defaults: train.checkpoint_every, train.checkpoint_min_s
    for label, interval in (
        ("every epoch", epoch_s),
        ("every 10 epochs", every * epoch_s),
        ("default policy (10 epochs and >= 120 s)", max(every * epoch_s, floor_s)),
    ):
        out["overhead"][label] = save_s / interval
        print(
            f"resnet18 width {args.width}, {args.images} images/epoch: epoch {epoch_s:.2f}s, checkpoint "
            f"{save_s:.3f}s ({size / 2**20:.1f} MiB): overhead {label} = {100 * save_s / interval:.2f}%"
        )
    out["overhead_setup"] = {
        "model": "resnet18",
        "width": args.width,
        "images": args.images,
        "epoch_s_median": epoch_s,
        "save_s_median": save_s,
        "reps": args.reps,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
