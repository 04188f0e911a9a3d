"""What a submission costs, said before it is made: expected device-hours and wall time.

Per run to submit, the seconds of the cycles it still lacks: from the finished runs (DONE) of the
same model and dataset in this sweep (per cycle, the mean over them of the train, select, eval and,
at cycles that tune, tune seconds from cycles.jsonl, per GPU model: the rows' `device`; timings of two models are never
averaged together, the estimate takes the slowest model's and the line gives each model's), else from the newest `bench/results/*.json` of bench_train for the
device kind (training and pool scoring throughput, scaled to the run's width; at a cycle that
tunes (`tune:`), its fits' training too: configurations x folds fits of `epochs` epochs on the
labelled set less its validation part), else unknown, and why.

device-hours = sum of run seconds x GPUs per task (1 on a CPU profile) / runs per task / 3600;
wall = waves x mean run seconds, a wave being array_parallelism tasks at once (queue time not included).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from al_core import data as datasets
from al_core.config import RunSpec, Sweep
from al_core.io import read_jsonl
from al_core.results import is_done
from al_core.tune import budget as tune_budget
from slurm.profiles import Resources

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench" / "results"
TIME_FIELDS = ("train_time_s", "select_time_s", "eval_time_s", "tune_time_s")  # tune: rows of cycles that tuned


@dataclass
class Cost:
    run_seconds: dict = field(default_factory=dict)  # run_id -> expected seconds of what it still lacks
    sources: dict = field(default_factory=dict)  # (model, dataset) -> where its times come from
    unknown: dict = field(default_factory=dict)  # (model, dataset) -> why no time is known
    unknown_runs: dict = field(default_factory=dict)  # (model, dataset) -> runs without a time
    by_device: dict = field(default_factory=dict)  # GPU model -> (seconds of the runs it has timings for, how many)
    device_hours: float = 0.0
    wall_s: float = 0.0
    waves: int = 0

    def line(self, device: str) -> str:
        n = len(self.run_seconds) + sum(self.unknown_runs.values())
        if not n:
            return "cost: nothing to submit"
        if self.unknown:
            why = "; ".join(f"{m} on {d}: {reason}" for (m, d), reason in self.unknown.items())
            head = f"cost: unknown for {sum(self.unknown_runs.values())} of {n} runs ({why})"
            if not self.run_seconds:
                return head
            head += f"; the other {len(self.run_seconds)}:"
        else:
            head = f"cost: {n} run{'s' if n != 1 else ''} to submit:"
        src = "; ".join(f"{m} on {d} {s}" for (m, d), s in self.sources.items())
        return (
            f"{head} expected {self.device_hours:.3g} {device}-hours, wall about {hms(self.wall_s)} "
            f"({self.waves} wave{'s' if self.waves != 1 else ''} of tasks; queue time not included); times {src}"
            + self.split(device)
        )

    def split(self, device: str) -> str:
        """Each GPU model's figure where finished runs were timed on more than one (every run covered)."""
        whole = {d: s for d, (s, n) in self.by_device.items() if n == len(self.run_seconds)}
        if len(whole) < 2:
            return ""
        hours = self.device_hours / max(sum(self.run_seconds.values()), 1e-9)  # device-hours per run second
        parts = ", ".join(f"{d} {s * hours:.3g}" for d, s in sorted(whole.items()))
        return f"; by GPU model ({device}-hours if every run ran there): {parts}"


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def cycle_seconds(row: dict) -> float:
    return float(sum(row.get(k) or 0.0 for k in TIME_FIELDS))


def measured(sweep: Sweep) -> dict[tuple, dict[str, dict[int, list[float]]]]:
    """(model, dataset) -> device (the rows' GPU model) -> cycle -> seconds of that cycle in each finished run."""
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for spec in sweep.runs():
        run_dir = sweep.run_dir(spec.run_id)
        if not is_done(run_dir):
            continue
        try:
            rows = read_jsonl(run_dir / "cycles.jsonl")
        except (OSError, ValueError):
            continue
        for row in rows:
            device = str(row.get("device") or "unknown")
            out[(spec.model, spec.config.dataset.name)][device][int(row["cycle"])].append(cycle_seconds(row))
    return out


def from_measured(per_cycle: dict[int, list[float]], spec: RunSpec, done: int) -> float:
    """Seconds of cycles done+1..N: each cycle's mean over finished runs (the mean of all where missing)."""
    means = {c: sum(v) / len(v) for c, v in per_cycle.items()}
    overall = sum(means.values()) / len(means)
    return sum(means.get(c, overall) for c in range(done + 1, spec.config.al.cycles + 1))


def newest_bench(kind: str, bench_dir: Path = BENCH_DIR) -> tuple[Path, dict] | None:
    """The newest bench_train result measured on a device of `kind` (cpu | cuda)."""
    found = []
    for path in bench_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        stamp = data.get("stamp", {}) if isinstance(data, dict) else {}
        if data.get("benchmark") == "bench_train" and stamp.get("device_type") == kind:
            found.append((str(stamp.get("date", "")), path, data))
    return max(found, key=lambda t: t[0])[1:] if found else None  # (path, data) of the newest date


def from_bench(data: dict, spec: RunSpec, done: int) -> float | None:
    """Seconds of cycles done+1..N from bench throughput (img/s), scaled by (width / bench width)^2."""
    model = data.get("models", {}).get(spec.model, {}).get("project", {})
    train, score = model.get("train", {}).get("img_per_s"), model.get("score", {}).get("img_per_s")
    if not train or not score:
        return None
    cfg = spec.config
    scale = (cfg.train.width / float(data.get("config", {}).get("width") or cfg.train.width)) ** 2
    pool = datasets.pool_size(cfg.dataset)
    total = 0.0
    for c in range(done + 1, cfg.al.cycles + 1):
        labelled = cfg.al.initial_size + (c - 1) * cfg.al.query_size
        total += cfg.train.epochs * labelled / train
        if cfg.tune is not None and c in cfg.tune["cycles"]:  # the fits that choose the cycle's values
            total += tune_budget(cfg.tune, cfg.train.epochs)["epochs"] * labelled * _fit_share(cfg.tune["folds"]) / train
        if pool is not None and c > 1:
            total += (pool - labelled + cfg.al.query_size) / score  # scoring the unlabelled pool
    return total * scale


def _fit_share(folds: int | float) -> float:
    """The part of the labelled set a tuning fit trains on: k - 1 of k folds, or 1 - the held-out fraction."""
    return (folds - 1) / folds if isinstance(folds, int) else 1.0 - folds


def estimate(sweep: Sweep, todo: list[tuple[RunSpec, int]], resources: Resources, bench_dir: Path | None = None) -> Cost:
    """`todo`: (spec, cycles already done) of each run to submit; bench_dir: default BENCH_DIR."""
    cost = Cost()
    bench_dir = bench_dir if bench_dir is not None else BENCH_DIR
    times = measured(sweep)
    kind = "cuda" if resources.gpus else "cpu"
    bench = newest_bench(kind, bench_dir)
    for spec, done in todo:
        key = (spec.model, spec.config.dataset.name)
        seconds = None
        if key in times:
            per_device = {dev: from_measured(c, spec, done) for dev, c in times[key].items()}
            seconds = max(per_device.values())  # the slowest GPU model's: a run may land on any of them
            for dev, s in per_device.items():
                total, n = cost.by_device.get(dev, (0.0, 0))
                cost.by_device[dev] = (total + s, n + 1)
            n = sum(max(len(v) for v in c.values()) for c in times[key].values())  # finished runs (each has cycle 1)
            models = f" on {len(per_device)} GPU models, the slowest's times" if len(per_device) > 1 else ""
            cost.sources[key] = f"from {n} finished run{'s' if n != 1 else ''} in this sweep{models}"
        elif bench is not None and (seconds := from_bench(bench[1], spec, done)) is not None:
            cost.sources[key] = f"from {bench[0].name} ({kind}, bench width {bench[1].get('config', {}).get('width')})"
        if seconds is None:
            cost.unknown[key] = f"no finished run in this sweep and no {kind} bench_train result for {spec.model} in {bench_dir}"
            cost.unknown_runs[key] = cost.unknown_runs.get(key, 0) + 1
            continue
        cost.run_seconds[spec.run_id] = seconds
    _totals(cost, resources)
    return cost


def _totals(cost: Cost, resources: Resources) -> None:
    if not cost.run_seconds:
        return
    k = resources.runs_per_task
    total = sum(cost.run_seconds.values())
    cost.device_hours = total * max(resources.gpus, 1) / k / 3600
    tasks = math.ceil(len(cost.run_seconds) / k)
    cost.waves = math.ceil(tasks / resources.array_parallelism)
    cost.wall_s = cost.waves * total / len(cost.run_seconds)


def line(sweep: Sweep, plan, resources: Resources) -> str:
    """The cost line of a plan's runs to submit."""
    from slurm.plan import progress

    todo = [(d.spec, progress(sweep, d.spec).cycles) for d in plan.to_submit]
    return estimate(sweep, todo, resources).line("GPU" if resources.gpus else "CPU")
