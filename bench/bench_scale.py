"""A thousand runs: the login-node commands of a large sweep on a real SLURM cluster, held.

A sweep of `--runs` tiny runs (jobs/smoke.yaml, grid.trial=[0..]) is submitted with `--hold`
(nothing trains), then `python -m slurm.status` and a re-sweep (which must submit nothing: held
jobs read PENDING) are timed; each repetition uses a fresh results directory and cancels its own
jobs afterwards (the job ids of its jobs.json). The cluster's MaxArraySize applies as it is
(`scontrol show config`). Then `python -m analysis.report --results DIR` is timed over `--runs`
finished synthetic shards (bench.synthetic_sweep). Every figure is the median of `--repeat`
whole commands (interpreter start and imports included). Without a controller that answers
`scontrol ping` the cluster part is skipped, with a message, and the report is still timed.

    python -m bench.bench_scale                 # 1,000 runs, median of 3
    python -m bench.bench_scale --runs 20 --repeat 1 --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {"submit": 10.0, "status": 5.0, "resweep": 5.0, "report": 30.0}


def controller_up() -> str | None:
    """None when sbatch exists and the controller answers `scontrol ping`, else why not."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "sbatch/scontrol not on PATH"
    try:
        p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"scontrol ping failed ({type(e).__name__})"
    return None if p.returncode == 0 and "UP" in p.stdout else "the SLURM controller does not answer `scontrol ping`"


def max_array_size() -> int | None:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", out, flags=re.M)
    return int(m.group(1)) if m else None


def sweep_file(directory: Path, runs: int, name: str) -> tuple[Path, list[str]]:
    """A copy of jobs/smoke.yaml writing under `directory`, and the overrides that make `runs` runs."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "jobs" / "smoke.yaml").read_text()
    text = text.replace("output: results", f"output: {directory / 'results'}").replace("name: smoke", f"name: {name}")
    path = directory / "scale.yaml"
    path.write_text(text)
    if runs % 4 == 0:  # two optimizers x two strategies x runs/4 trials
        axes = [
            "grid.optimizer=[sgd,adam]",
            "grid.strategy=[random,entropy]",
            f"grid.trial=[{','.join(map(str, range(runs // 4)))}]",
        ]
    else:
        axes = ["grid.optimizer=[sgd]", "grid.strategy=[random]", f"grid.trial=[{','.join(map(str, range(runs)))}]"]
    return path, ["al.cycles=1", "train.epochs=1", *axes]


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of one whole command and its stdout; a failure stops the benchmark."""
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... exited {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    return wall, p.stdout


def cancel_own(sweep_dir: Path) -> list[str]:
    """scancel the jobs this repetition submitted (the array ids of its jobs.json), nothing else."""
    try:
        records = json.loads((sweep_dir / "jobs.json").read_text())
    except (OSError, ValueError):
        return []
    arrays = sorted({rec["job_id"].split("_")[0] for rec in records.values()}, key=int)
    for i in range(0, len(arrays), 200):
        subprocess.run(["scancel", *arrays[i : i + 200]], capture_output=True, timeout=60)
    return arrays


def cluster_rep(work: Path, runs: int, rep: int) -> dict[str, float]:
    """One repetition on a fresh results directory: submit --hold, status, re-sweep; then cancel."""
    directory = work / f"rep{rep}"
    directory.mkdir(parents=True)
    path, overrides = sweep_file(directory, runs, f"bench-scale-{os.getpid()}")
    py = [sys.executable, "-m"]
    sweep_dir = directory / "results" / f"bench-scale-{os.getpid()}"
    try:
        submit_s, out = timed([*py, "slurm.sweep", str(path), *overrides, "--cluster", "slurm", "--hold"])
        if f"submitted {runs} runs" not in out:
            raise SystemExit(f"error: the sweep did not submit {runs} runs: {out.strip().splitlines()[-3:]}")
        status_s, out = timed([*py, "slurm.status", str(path), *overrides])
        if f"total: {runs} runs: {runs} PENDING" not in out:
            raise SystemExit(f"error: status did not show {runs} PENDING runs: {out.strip().splitlines()[-1]}")
        resweep_s, out = timed([*py, "slurm.sweep", str(path), *overrides, "--cluster", "slurm", "--hold"])
        if f"0 to submit, {runs} skipped (0 DONE, {runs} queued or running)" not in out:
            raise SystemExit(f"error: the re-sweep queued something: {out.strip().splitlines()[-3:]}")
    finally:
        arrays = cancel_own(sweep_dir)
    print(
        f"  rep {rep + 1}: submit {submit_s:.2f} s ({len(arrays)} jobs: arrays and the report job), status {status_s:.2f} s, re-sweep {resweep_s:.2f} s",
        flush=True,
    )
    return {"submit": submit_s, "status": status_s, "resweep": resweep_s}


def report_times(work: Path, runs: int, repeat: int, cycles: int) -> list[float]:
    """The report command over `runs` finished synthetic shards (written once, not timed)."""
    from bench.synthetic_sweep import write_synthetic_sweep

    results = work / "report"
    trials = range(-(-runs // 4))
    write_synthetic_sweep(results, ("resnet18",), ("sgd", "adam"), ("random", "entropy"), trials, cycles=cycles, max_runs=runs)
    walls = []
    for _ in range(repeat):
        wall, _ = timed([sys.executable, "-m", "analysis.report", "--results", str(results)])
        walls.append(wall)
    return walls


def table(medians: dict[str, float | None], runs: int) -> str:
    lines = [f"{'command (' + str(runs) + ' runs)':<34} {'median s':>9} {'target s':>9}  verdict"]
    names = {
        "submit": "plan + submit (sweep --hold)",
        "status": "status (slurm.status)",
        "resweep": "re-sweep (queues nothing)",
        "report": "report (analysis.report)",
    }
    for key, label in names.items():
        value = medians.get(key)
        verdict = "skipped" if value is None else ("met" if value <= TARGETS_S[key] else "MISSED")
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"{label:<34} {shown:>9} {TARGETS_S[key]:>9.1f}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="runs of the sweep (and synthetic shards of the report)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; each figure is their median")
    p.add_argument("--cycles", type=int, default=10, help="cycles per synthetic shard of the report")
    p.add_argument("--no-report", action="store_true", help="time the cluster commands only")
    p.add_argument("--json", type=Path, help="result file (default bench/results/scale-<host>-<time>.json)")
    args = p.parse_args(argv)

    why = controller_up()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        if why:
            print(f"cluster part skipped: {why} (start one with: bash .ci/slurm-cluster.sh up)", flush=True)
        else:
            print(f"cluster: MaxArraySize {max_array_size()}; {args.runs} runs submitted held, {args.repeat} repetitions")
            for rep in range(args.repeat):
                for key, value in cluster_rep(work, args.runs, rep).items():
                    times.setdefault(key, []).append(value)
        if not args.no_report:
            times["report"] = report_times(work, args.runs, args.repeat, args.cycles)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(table(medians, args.runs))
    result = {
        "runs": args.runs,
        "repeat": args.repeat,
        "report_cycles": args.cycles,
        "max_array_size": None if why else max_array_size(),
        "cluster_skipped": why,
        "targets_s": TARGETS_S,
        "median_s": medians,
        "times_s": times,
        "machine": machine(),
        "command": "python -m bench.bench_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = args.json or ROOT / "bench" / "results" / f"scale-{socket.gethostname()}-{datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def machine() -> dict:
    """Where the figures were measured (the cores are shared: the load is part of the figure)."""
    from bench._machine import cpu_model

    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    sys.exit(main())
