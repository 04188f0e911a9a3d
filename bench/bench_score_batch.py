"""CPU scoring by batch size: the project's path at `train.eval_batch_size` auto and at 1024 against
the reference (DataLoader + PIL, batch 128), interleaved within every rep so that a shared
machine's load falls on all three alike (BENCHMARKS.md, issue 26). One torch thread, width 16.

    python -m bench.bench_score_batch 1024 resnet50,resnet34   # images per pass, models
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from al_core.train import autocast, eval_batch_size, score_pool
from bench import _reference as ref
from bench.bench_train import build, device_data, random_images


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 1024
    models = argv[1].split(",") if len(argv) > 1 else ["resnet18", "resnet34", "resnet50"]
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    images, labels = random_images(n)
    data, amp, idx = device_data(images, labels, dev), autocast(dev, "fp32"), np.arange(n)
    score_set = ref.InMemoryCIFAR(images, labels.tolist(), ref.test_transform())
    auto = eval_batch_size("auto", dev)
    for name in models:
        model, lossnet = build(name, 16, dev)
        loader = ref.score_loader(score_set, 128, 0, False)
        passes = {
            f"project {auto}": lambda: score_pool(model, lossnet, data, idx, auto, amp),
            "project 1024": lambda: score_pool(model, lossnet, data, idx, 1024, amp),
            "reference 128": lambda: ref.score(model, lossnet, loader, dev),
        }
        rates: dict[str, list[float]] = {}
        for rep in range(4):  # the first is the warm-up
            for key, score in passes.items():
                t0 = time.perf_counter()
                score()
                if rep:
                    rates.setdefault(key, []).append(n / (time.perf_counter() - t0))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(
            f"{name}: "
            + ", ".join(f"{k} {v:,.1f} img/s" for k, v in med.items())
            + f" | ratio at auto {med[f'project {auto}'] / med['reference 128']:.2f}x,"
            f" at 1024 {med['project 1024'] / med['reference 128']:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
