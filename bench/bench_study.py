"""The study's verdicts under conditions as hard as a real sweep: `python -m bench.bench_study`.

Each simulated study draws whole per-cycle accuracy curves (10 cycles, 1,000 to 10,000 labels) for
every run of a grid, with
- a trial effect and a model-within-trial effect (the runs of one model and trial share their
  initial weights: a split plot),
- run noise that wanders from cycle to cycle (AR(1)), with a different SD per optimizer,
- diverged runs (0.5% of runs, any optimizer): from a random cycle on, stuck near chance (10% +- 1 point),
and computes each run's AUBC with the project's own code (analysis.metrics.aubc on the cycles
table); then analysis.decide judges the primary questions (optimizer, model, model:optimizer, the
first strategy vs random) at looks after 5, 10, ..., 30 trials with the O'Brien-Fleming spending
of analysis.decide, stopping when every primary question is decided, as slurm.waves does.
`--fixed N` judges once at N trials instead (a fixed design).

Scenarios: `null` (no effect anywhere), `optimizer` (a 1-point main effect of one optimizer, all
of it in about half of the strategies, random and the first strategy among them, so that every
other primary question stays null). Reported: the fraction of studies with any false `difference` (over every primary
question under null; over the null questions and the null pairs of the optimizer question with an
effect), the power (the optimizer question answers `difference` naming the planted optimizer's
pairs), and the mean trials spent.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
import pandas as pd

from analysis.decide import decide, default_primary, fractions
from analysis.metrics import aubc

GRIDS = {
    "full": (("resnet18", "resnet34", "resnet50"), ("adam", "adamw", "rmsprop", "sgd"), 11),
    "fair": (("resnet18", "resnet34", "resnet50"), ("adam", "adamw", "rmsprop", "sgd"), 2),
}
NOISE_SD = {"adam": 1.0, "adamw": 0.8, "rmsprop": 1.6, "sgd": 1.2}  # points, per cycle: unequal variances
SIZES = np.arange(1, 11) * 1000


def strategies(n: int) -> list[str]:
    named = [
        "learning_loss",
        "margin",
        "entropy",
        "least_confidence",
        "coreset",
        "badge",
        "bald",
        "typiclust",
        "probcover",
        "batchbald",
    ]
    return [*named[: n - 1], "random"]


def simulate_runs(rng: np.random.Generator, grid: str, n_trials: int, effect: float, diverge: float = 0.005) -> pd.DataFrame:
    """A run table (model, optimizer, strategy, trial, done, aubc) of one simulated study."""
    models, optimizers, n_strat = GRIDS[grid]
    strats = strategies(n_strat)
    with_effect = set(strats[: max(1, len(strats) // 2)]) | {"random"}  # the first strategy and random included
    shape = (n_trials, len(models), len(optimizers), len(strats))
    curve = 60 + 25 * (1 - np.exp(-SIZES / 3000.0))  # points: a learning curve
    shift = rng.normal(0, 0.5, shape[0])[:, None, None, None] + rng.normal(0, 0.7, shape[:2])[:, :, None, None]
    planted = np.zeros(shape[1:])  # `effect` points of main effect, all of it in the strategies `with_effect`
    planted[:, 0, [s in with_effect for s in strats]] = effect * len(strats) / len(with_effect)
    sd = np.array([NOISE_SD[o] for o in optimizers])[None, None, :, None]
    e = np.empty((*shape, len(SIZES)))
    e[..., 0] = rng.normal(0, 1, shape) * sd
    for c in range(1, len(SIZES)):  # AR(1) across cycles
        e[..., c] = 0.6 * e[..., c - 1] + rng.normal(0, 1, shape) * sd * 0.8
    acc = curve + (shift + planted)[..., None] + e
    start = np.where(rng.random(shape) < diverge, rng.integers(0, len(SIZES), shape), len(SIZES))
    stuck = np.arange(len(SIZES)) >= start[..., None]  # diverged: stuck near chance from `start` on
    acc = np.where(stuck, 10 + rng.normal(0, 1.0, acc.shape), acc)
    meta = list(itertools.product(range(n_trials), models, optimizers, strats))
    ids = [f"{m}-{o}-{s}-t{t}" for t, m, o, s in meta]
    cycles = pd.DataFrame(
        {
            "run_id": np.repeat(ids, len(SIZES)),
            "n_labeled": np.tile(SIZES, len(ids)),
            "test_accuracy": np.clip(acc, 0, 100).reshape(-1) / 100,
        }
    )
    area = aubc(cycles)  # the project's AUBC
    runs = pd.DataFrame(meta, columns=["trial", "model", "optimizer", "strategy"]).assign(run_id=ids, done=True)
    return runs.assign(aubc=runs["run_id"].map(area))


def one_study(rng, grid: str, effect: float, looks: list[int], max_trials: int, diverge: float = 0.005, primary=None) -> dict:
    """Judge one simulated study at its looks; stop when every primary question is decided."""
    runs = simulate_runs(rng, grid, looks[-1], effect, diverge)
    margin = 1.0
    primary = primary or default_primary(strategies(GRIDS[grid][2]))
    seq = {"max": max_trials}
    kept: dict = {}  # a verdict reached at a look stands (analysis.decide._earlier)
    last: dict = {}
    n = looks[0]
    for k, n in enumerate(looks):
        earlier = [{"wave": i + 1, "n_trials": m} for i, m in enumerate(looks[:k])]
        fr = fractions(earlier, k + 1, n, seq) if len(looks) > 1 else [1.0]
        for v in decide(runs[runs["trial"] < n], primary, margin, fr):
            last[v.question] = v
            if v.verdict != "undecided":
                kept.setdefault(v.question, v)
        if all(q in kept for q in primary):
            break
    final = {q: kept.get(q, last[q]) for q in primary}
    return {"trials": n, "verdicts": final, "optimizers": GRIDS[grid][1]}


def summarise(results: list[dict], effect: float) -> dict:
    """False claims (any false difference), power and mean trials over simulated studies."""
    false_any, power = 0, 0
    for r in results:
        planted = r["optimizers"][0]
        wrong = False
        for q, v in r["verdicts"].items():
            if v.verdict != "difference":
                continue
            if q == "optimizer" and effect:
                named = [c for c in v.contrasts.itertuples() if c.ci_low > 0 or c.ci_high < 0]
                wrong |= any(planted not in c.contrast for c in named)  # a pair without the planted optimizer
            else:
                wrong = True
        false_any += wrong
        opt = r["verdicts"].get("optimizer")
        power += bool(effect) and opt is not None and opt.verdict == "difference" and planted in opt.pairs
    n = len(results)
    return {
        "studies": n,
        "false_claims": false_any / n,
        "power": power / n if effect else float("nan"),
        "mean_trials": float(np.mean([r["trials"] for r in results])),
    }


def run(grid: str, effect: float, n: int, seed: int, fixed: int | None = None, diverge: float = 0.005, primary=None) -> dict:
    looks = [fixed] if fixed else [5, 10, 15, 20, 25, 30]
    rngs = (np.random.default_rng([seed, i]) for i in range(n))
    results = [one_study(rng, grid, effect, looks, fixed or 30, diverge, primary) for rng in rngs]
    return summarise(results, effect)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_study", description=__doc__.split("\n")[0])
    p.add_argument("--studies", type=int, default=1000, help="simulated studies per scenario (default 1000)")
    p.add_argument("--grid", choices=sorted(GRIDS), action="append", help="grids (default: fair and full)")
    p.add_argument("--fixed", type=int, action="append", help="also judge fixed designs of N trials (repeatable)")
    p.add_argument("--diverge", type=float, action="append", help="share of runs that diverge (default 0.005; repeatable)")
    p.add_argument("--primary", action="append", help="primary questions (default: the study's four)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(
        "| grid | diverged | scenario | design | studies | any false difference | power (1-point optimizer) | mean trials | s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    scenarios = itertools.product(args.grid or ["fair", "full"], args.diverge or [0.005], (("null", 0.0), ("optimizer", 1.0)))
    for grid, diverge, (name, effect) in scenarios:
        for fixed in [None, *(args.fixed or [])]:
            t0 = time.perf_counter()
            s = run(grid, effect, args.studies, args.seed, fixed, diverge, args.primary)
            design = f"fixed {fixed}" if fixed else "sequential 5+5..30"
            pw = "-" if np.isnan(s["power"]) else f"{s['power']:.3f}"
            print(
                f"| {grid} | {diverge:.1%} | {name} | {design} | {s['studies']} | {s['false_claims']:.3f} | {pw} | {s['mean_trials']:.1f} "
                f"| {time.perf_counter() - t0:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
