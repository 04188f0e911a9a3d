"""The claims' error rate and power, measured by simulation: `python -m bench.bench_calibration`.

Sweeps with no effect of model, optimizer or strategy (a trial block effect and run noise only):
the fraction in which each question claims anything must stay at or below 5%. Sweeps with one
optimizer EFFECT AUBC points better everywhere (5 trials, paired SD 1 point): the fraction in
which the optimizer question claims something and names only right pairs (the planted optimizer
higher) must reach 80%. The statistics are analysis.questions.answer on run-level tables
(bench.synthetic_sweep.simulate_runs); no files are written.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from analysis.questions import answer
from bench.synthetic_sweep import simulate_runs

KEYS = ["dataset", "model", "optimizer", "strategy"]
QUESTIONS = ("optimizer", "model", "model:optimizer", "entropy vs random", "margin vs random")
STRATEGIES = ("entropy", "margin", "random")  # two '<strategy> vs random' questions, shared random runs


def simulate(n_sweeps: int, effect_points: float, seed: int = 0, n_trials: int = 5) -> pd.DataFrame:
    """`n_sweeps` simulated sweeps stacked in one run table, sweep i as dataset `s<i>`: each
    dataset is its own unit, so one call to `answer` answers every sweep's questions at once."""
    frames = [
        simulate_runs(
            np.random.default_rng([seed, i]),
            strategies=STRATEGIES,
            n_trials=n_trials,
            optimizer_effect=effect_points / 100,
            dataset=f"s{i}",
        )
        for i in range(n_sweeps)
    ]
    return pd.concat(frames, ignore_index=True)


def calibrate(n_sweeps: int, effect_points: float, seed: int = 0, n_trials: int = 5) -> dict:
    """Per question: the fraction of `n_sweeps` sweeps in which it claims anything. `detected`:
    the optimizer question claims something and names only right pairs (the planted optimizer,
    the first, "adam", higher: diff_mean > 0 as adam < sgd); `recall`: planted pairs named."""
    a = answer(simulate(n_sweeps, effect_points, seed, n_trials), KEYS)
    claimed = a.questions.pivot(index="dataset", columns="question", values="significant")
    claimed = claimed.reindex(index=[f"s{i}" for i in range(n_sweeps)], columns=list(QUESTIONS)).fillna(False).astype(bool)
    rates = {q: float(claimed[q].mean()) for q in QUESTIONS}
    rates["any question"] = float(claimed.any(axis=1).mean())
    opt = a.optimizers
    wrong = opt[opt["significant"] & (opt["diff_mean"] <= 0)]["dataset"].unique()
    rates["detected"] = float((claimed["optimizer"] & ~claimed.index.isin(wrong)).mean())
    rates["recall"] = float((opt["significant"] & (opt["diff_mean"] > 0)).mean()) if effect_points else 0.0
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", type=int, default=1000, help="simulated sweeps per scenario (default 1000)")
    parser.add_argument("--effect", type=float, default=2.0, help="planted optimizer effect, AUBC points (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    null = calibrate(args.sweeps, 0.0, args.seed)
    planted = calibrate(args.sweeps, args.effect, args.seed + 10**6)
    grid = f"2 models x 2 optimizers x {len(STRATEGIES)} strategies x 5 trials, paired SD 1 point, {args.sweeps} sweeps each"
    print(f"calibration of the claims ({grid}):")
    for q in QUESTIONS:
        print(f"  no effect: '{q}' claims something in {null[q]:.1%} of sweeps (target <= 5%)")
    print(
        f"  no effect: some question claims something in {null['any question']:.1%} of sweeps (each question is its own family)"
    )
    print(
        f"  optimizer +{args.effect:g} points: detected with only right pairs named in {planted['detected']:.1%} "
        f"(target >= 80%); planted pairs named {planted['recall']:.1%}; other questions claim: "
        + ", ".join(f"{q} {planted[q]:.1%}" for q in QUESTIONS[1:])
    )
    print(f"  ({time.perf_counter() - start:.1f} s)")
    ok = all(null[q] <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / args.sweeps) for q in QUESTIONS) and planted["detected"] >= 0.8
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
