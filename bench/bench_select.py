"""Selection time per strategy on a pool the size of CIFAR-10's (49,000 x 512 embeddings).

The strategies' own computations on given inputs, on the current device (CUDA when present):
coreset's k-center greedy (1,000 labelled centres), badge's k-means++ seeding on the gradient
embeddings of 10 classes (factored, as the strategy runs it), bald's mutual information from
T = 20 passes, entropy and random for comparison; and the newer baselines (issue 24): margin with
power sampling (stochastic batch acquisition), batchbald (the greedy steps on `--bb-candidates`
candidates, `--bb-samples` label configurations; `--bb-k` picks, since each pick costs the same
as the first), typiclust and probcover (delta by the purity rule) on the candidates and the
labelled set together. The model's passes over the pool that produce
the inputs are not included (they are one scoring pass, T head passes for bald: see bench_train's
scoring throughput). Median of `--reps` runs after one warm-up.

    python -m bench.bench_select                         # 49,000 x 512, k = 1,000
    python -m bench.bench_select --n 10000 --k 500       # reduced, on a busy machine
    python -m bench.bench_select --n 10000 --only typiclust,probcover   # some strategies only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from al_core.selection import grad_scale
from al_core.strategies import (
    bald_scores,
    batchbald_select,
    kcenter_greedy,
    probcover_select,
    stochastic_batch,
    top_k,
    typiclust_select,
    uncertainty_scores,
)
from al_core.strategies.functions import badge_seeding_factored
from al_core.strategies.typical import kmeans_labels, purity_delta
from bench._machine import stamp


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.bench_select", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=49000, help="candidates")
    p.add_argument("--d", type=int, default=512, help="embedding size")
    p.add_argument("--m", type=int, default=1000, help="labelled set (coreset's initial centres)")
    p.add_argument("--k", type=int, default=1000, help="query size")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--passes", type=int, default=20, help="bald: T dropout passes")
    p.add_argument("--bb-k", type=int, default=100, help="batchbald: picks timed")
    p.add_argument("--bb-candidates", type=int, default=1000, help="batchbald: select.batchbald_candidates")
    p.add_argument("--bb-samples", type=int, default=1000, help="batchbald: select.batchbald_samples")
    p.add_argument("--only", default="", help="comma-separated strategies to time (default: all)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(args.n, args.d, generator=g).relu().to(device)  # post-ReLU features, as a ResNet's
    centres = torch.randn(args.m, args.d, generator=g).relu().to(device)
    probs = torch.softmax(3 * torch.randn(args.n, args.classes, generator=g), 1).to(device)
    mc = torch.softmax(3 * torch.randn(args.passes, args.n, args.classes, generator=g), 2).to(device)
    cand = np.arange(args.n)
    both, labelled = torch.cat([emb, centres]), np.arange(args.n, args.n + args.m)  # typiclust, probcover
    runs = {
        "random": lambda: np.random.default_rng(0).choice(cand, size=args.k, replace=False),
        "entropy": lambda: top_k(uncertainty_scores(probs, "entropy"), cand, args.k),
        "bald": lambda: top_k(bald_scores(mc), cand, args.k),
        "coreset": lambda: kcenter_greedy(emb, centres, args.k),
        "badge": lambda: badge_seeding_factored(grad_scale(probs), emb, args.k, np.random.default_rng(0)),
        "margin+power": lambda: cand[stochastic_batch(uncertainty_scores(probs, "margin"), args.k, np.random.default_rng(0))],
        "batchbald": lambda: batchbald_select(mc, args.bb_k, np.random.default_rng(0), args.bb_samples, args.bb_candidates),
        "typiclust": lambda: typiclust_select(both, labelled, args.k, np.random.default_rng(0)),
        "probcover": lambda: probcover_select(
            both, labelled, args.k, purity_delta(both, kmeans_labels(both, args.classes, np.random.default_rng(0)))
        ),
    }
    if args.only:
        runs = {name: runs[name] for name in args.only.split(",")}
    result = {
        "stamp": stamp(device),
        "n": args.n,
        "d": args.d,
        "m": args.m,
        "k": args.k,
        "classes": args.classes,
        "passes": args.passes,
        "batchbald": {"k": args.bb_k, "candidates": args.bb_candidates, "samples": args.bb_samples},
        "device": str(device),
        "select_s": {},
    }
    print(
        f"selection of {args.k} from {args.n} x {args.d} (m={args.m} labelled, {args.classes} classes, "
        f"T={args.passes}) on {device}, median of {args.reps}:"
    )
    for name, fn in runs.items():
        s = timed(fn, device, args.reps)
        result["select_s"][name] = round(s, 4)
        print(f"  {name:12s} {s:9.3f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
