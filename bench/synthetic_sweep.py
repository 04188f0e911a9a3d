"""Synthetic run directories in the layout of README's Results layout, for the tests and the
report benchmark: plausible accuracy curves, no training. Not used by the report itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from al_core import results


def write_synthetic_sweep(
    sweep_dir: str | os.PathLike,
    models: Sequence[str] = ("resnet18", "resnet34"),
    optimizers: Sequence[str] = ("sgd", "adam"),
    strategies: Sequence[str] = ("learning_loss", "random"),
    trials: Sequence[int] = (0, 1, 2),
    cycles: int = 4,
    n_classes: int = 10,
    initial_size: int = 100,
    query_size: int = 100,
    n_pool: int = 5000,
    queried_size: int | None = None,
    in_progress: int = 0,
    device: str = "cpu",
    dataset: str = "synthetic",
    max_runs: int | None = None,
    seed: int = 0,
    precision: Callable[[str, str, str, int], str] | None = None,
) -> list[str]:
    """Write one run directory per grid point under `<sweep_dir>/runs`; return the run_ids.

    `queried_size` is how many pool indices each row's `queried` list holds (default: the real
    number, initial_size or query_size). The last `in_progress` runs stop half-way, without DONE.
    `precision(model, optimizer, strategy, trial)`, when given, is the rows' `precision` field.
    """
    rng = np.random.default_rng(seed)
    runs_dir = Path(sweep_dir) / "runs"
    run_ids = []
    grid = [(m, o, s, t) for m in models for o in optimizers for s in strategies for t in trials][:max_runs]
    for index, (model, optimizer, strategy, trial) in enumerate(grid):
        run_id = results.run_id(model, optimizer, strategy, trial)
        run_dir = runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        ds, al = {"name": dataset, "root": "data"}, {"cycles": cycles, "initial_size": initial_size, "query_size": query_size}
        config = dict(model=model, optimizer=optimizer, strategy=strategy, trial=trial, dataset=ds, al=al)
        (run_dir / results.RUN_JSON).write_text(json.dumps({"run_id": run_id, "config": config, "device": device}))
        finished = cycles if index < len(grid) - in_progress else max(1, cycles // 2)
        # A saturating curve: deeper models and SGD a little higher, learning_loss a little above random.
        ceiling = 0.80 + 0.02 * models.index(model) + (0.02 if optimizer == "sgd" else 0.0)
        bonus = 0.01 if strategy != "random" else 0.0
        lines = []
        for cycle in range(1, finished + 1):
            n_labeled = initial_size + (cycle - 1) * query_size
            acc = ceiling * (1 - 0.7 * np.exp(-3 * n_labeled / (initial_size + cycles * query_size))) + bonus * (cycle > 1)
            acc = float(np.clip(acc + rng.normal(0, 0.01), 0, 1))
            k = initial_size if cycle == 1 else query_size
            counts, queried = _queried(rng, strategy != "random", n_classes, k, queried_size, n_pool, trial, cycle == 1)
            keys = dict(run_id=run_id, dataset=dataset, model=model, optimizer=optimizer, strategy=strategy, trial=trial)
            measures = _measures(rng, acc, counts, n_classes, n_labeled, models.index(model), device)
            if precision is not None:
                measures["precision"] = precision(model, optimizer, strategy, trial)
            row = results.cycle_row(**keys, cycle=cycle, n_labeled=n_labeled, n_pool=n_pool, queried=queried, **measures)
            lines.append(json.dumps(row))
        (run_dir / results.CYCLES).write_text("".join(line + "\n" for line in lines))
        if finished == cycles:
            (run_dir / results.DONE).write_text("")
        run_ids.append(run_id)
    return run_ids


def _queried(rng, skewed: bool, n_classes: int, k: int, queried_size, n_pool: int, trial: int, first: bool):
    """A cycle's queried class counts and pool indices (`queried_size` of them, default k)."""
    weights = np.ones(n_classes) + (0.5 * np.arange(n_classes) / n_classes if skewed else 0)
    counts = rng.multinomial(k, weights / weights.sum())
    size = k if queried_size is None else queried_size
    queried = rng.integers(0, n_pool, size=size).tolist()
    if first:  # al.initial: random: every run of a trial starts from the same labelled set
        queried = sorted(np.random.default_rng(1000 + trial).choice(n_pool, size=min(size, n_pool), replace=False).tolist())
    return counts, queried


def _measures(rng: np.random.Generator, acc: float, counts, n_classes: int, n_labeled: int, depth: int, device: str) -> dict:
    """A row's measured fields: accuracies, queried class counts, times, memory and energy."""
    gpu = device != "cpu"
    return {
        "queried_class_counts": counts.tolist(),
        "test_accuracy": acc,
        "test_macro_f1": float(np.clip(acc - 0.02 + rng.normal(0, 0.005), 0, 1)),
        "per_class_accuracy": np.clip(acc + rng.normal(0, 0.05, n_classes), 0, 1).round(4).tolist(),
        "train_time_s": float(n_labeled / 50 * (1 + depth)),
        "select_time_s": 2.0,
        "eval_time_s": 1.0,
        "peak_mem_bytes": int(2**30 * (1 + depth)) if gpu else None,
        "energy_j": float(300 * n_labeled / 50) if gpu else None,
        "device": device,
    }


def simulate_runs(
    rng: np.random.Generator,
    models: Sequence[str] = ("resnet18", "resnet34"),
    optimizers: Sequence[str] = ("adam", "sgd"),
    strategies: Sequence[str] = ("entropy", "random"),
    n_trials: int = 5,
    optimizer_effect: float = 0.0,
    block_sd: float = 0.02,
    paired_sd: float = 0.01,
    dataset: str = "synthetic",
) -> pd.DataFrame:
    """A run-level table (the columns analysis.questions.answer reads) of one simulated sweep:
    AUBC = 0.7 + a trial block effect (SD `block_sd`, shared by every run of a trial) + run noise
    (SD paired_sd / sqrt 2, so a paired difference has SD `paired_sd`) + `optimizer_effect` for
    the first optimizer on every model and strategy. No model, strategy or interaction effect."""
    grid = [(m, o, s, t) for t in range(n_trials) for m in models for o in optimizers for s in strategies]
    block = rng.normal(0, block_sd, n_trials)
    noise = rng.normal(0, paired_sd / np.sqrt(2), len(grid))
    return pd.DataFrame(
        {
            "run_id": [f"{m}-{o}-{s}-t{t}" for m, o, s, t in grid],
            "dataset": dataset,
            "model": [g[0] for g in grid],
            "optimizer": [g[1] for g in grid],
            "strategy": [g[2] for g in grid],
            "trial": [g[3] for g in grid],
            "done": True,
            "aubc": [
                0.7 + block[t] + e + (optimizer_effect if o == optimizers[0] else 0.0) for (m, o, s, t), e in zip(grid, noise)
            ],
        }
    )
