"""Benchmark of the report: generated run directories (shards) -> `python -m analysis.report --results`.

Prints the median wall time of the whole command (imports included) and of each phase, and
writes them as JSON. Generation is not timed; shards are reused when the sizes are unchanged.

    python -m bench.bench_report --runs 120 --cycles 10
    python -m bench.bench_report --runs 10000 --cycles 10 --repeat 1 --json bench/report_10k.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODELS = ("resnet18", "resnet34", "resnet50")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
STRATEGIES = ("learning_loss", "random")


def generate(sweep_dir: Path, args: argparse.Namespace) -> float:
    """Write the shards unless the same sizes are already there; return the seconds it took."""
    from bench.synthetic_sweep import write_synthetic_sweep

    params = {k: getattr(args, k) for k in ("runs", "cycles", "initial_size", "query_size", "pool", "in_progress")}
    marker = sweep_dir / "bench_params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return 0.0
    shutil.rmtree(sweep_dir, ignore_errors=True)
    start = time.perf_counter()
    trials = math.ceil(args.runs / (len(MODELS) * len(OPTIMIZERS) * len(STRATEGIES)))
    write_synthetic_sweep(
        sweep_dir,
        MODELS,
        OPTIMIZERS,
        STRATEGIES,
        range(trials),
        cycles=args.cycles,
        initial_size=args.initial_size,
        query_size=args.query_size,
        n_pool=args.pool,
        in_progress=round(args.runs * args.in_progress),
        device="NVIDIA V100-SXM2-32GB",
        dataset="cifar10",
        max_runs=args.runs,
    )
    marker.write_text(json.dumps(params))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120, help="run directories to generate")
    parser.add_argument("--cycles", type=int, default=10, help="cycles per run")
    parser.add_argument("--initial-size", type=int, default=1000, help="labelled samples of cycle 1 (= length of its `queried`)")
    parser.add_argument("--query-size", type=int, default=1000, help="samples queried per later cycle (= length of `queried`)")
    parser.add_argument("--pool", type=int, default=50000, help="pool size")
    parser.add_argument("--in-progress", type=float, default=0.02, help="fraction of runs stopped half-way (no DONE)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of the command")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_report", help="where the shards live"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write the results here (default: <workdir>/bench_report_<runs>.json)"
    )
    args = parser.parse_args()

    sweep_dir = args.workdir / f"runs{args.runs}x{args.cycles}"
    generated = generate(sweep_dir, args)
    size = sum(p.stat().st_size for p in (sweep_dir / "runs").rglob("cycles.jsonl"))
    print(
        f"shards: {args.runs} runs x {args.cycles} cycles in {sweep_dir} ({size / 2**20:.0f} MiB of cycles.jsonl)"
        + (f", generated in {generated:.1f} s" if generated else ", reused")
    )

    # The whole command, as a user runs it (interpreter start and imports included).
    command = [sys.executable, "-m", "analysis.report", "--results", str(sweep_dir)]
    walls = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)

    # Phases, in this process (imports excluded).
    from analysis import build_report

    phases: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        timings: dict[str, float] = {}
        build_report(sweep_dir, timings=timings)
        for name, seconds in timings.items():
            phases.setdefault(name, []).append(seconds)

    import matplotlib
    import pandas

    result = {
        "runs": args.runs,
        "cycles": args.cycles,
        "queried_per_row": [args.initial_size, args.query_size],
        "cycles_jsonl_mib": round(size / 2**20, 1),
        "repeat": args.repeat,
        "command_s_median": statistics.median(walls),
        "command_s": walls,
        "phases_s_median": {k: statistics.median(v) for k, v in phases.items()},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pandas": pandas.__version__,
            "matplotlib": matplotlib.__version__,
        },
        "command": " ".join(command),
    }
    print(
        f"report of {args.runs} runs x {args.cycles} cycles: median {result['command_s_median']:.2f} s "
        f"(whole command, {args.repeat} runs: {', '.join(f'{w:.2f}' for w in walls)})"
    )
    print("phases (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["phases_s_median"].items()))
    out = args.json or args.workdir / f"bench_report_{args.runs}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
