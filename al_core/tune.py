"""Hyper-parameter selection inside the active-learning loop (the sweep's `tune:` section).

At the cycles the sweep lists, every point of the run's optimizer grid is scored on validation
split(s) held out of the *current labelled set* (k stratified folds, or one stratified held-out
fraction), seeded from (trial, cycle, "tune-split"). The point with the best mean validation
accuracy wins (ties: the first in grid order); the cycle's model is then trained on the whole
labelled set with it. At later cycles not listed, the last chosen values are reused. Only pool
labels of the labelled set are read: the test set never takes part in a choice.

Each fit is trained exactly as the cycle's model would be (same epochs, schedule, batch size,
augmentation streams, loss-prediction module if the run trains one, same starting weights,
same decay groups). With `optim.wd_normalized` the grid's weight_decay values are normalised ones:
each fit's decay is scaled to its own training folds (al_core.optim.normalized_decay), as the
cycle's model is to the whole labelled set, so the chosen value transfers between the two.
Finished (grid point, fold) scores go to `tune-cNNN.json` in the run directory, written
atomically after every fit, so a run killed while tuning loses at most the fit in progress.

Cost: a tuned cycle trains 1 + P * (k - 1) times the labelled set's worth of epochs with k folds,
1 + P * (1 - f) times with a held-out fraction f (P grid points).
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from al_core import registry, seeding
from al_core.errors import ConfigError

FORMAT = "al_core-tune/1"
KEYS = ("cycles", "folds", "grid")


# ----------------------------------------------------------------------------------------------
# The sweep file's `tune:` section, resolved for one run.
def for_run(raw: Any, optimizer: str, n_cycles: int) -> dict | None:
    """The run's tuning spec {"cycles": [...], "folds": k | f, "grid": {hp: [values]}}, or None.

    None when the sweep has no `tune:` section (or `tune: null`) or when the run's optimizer has
    an empty grid (`tune.grid.<optimizer>: {}`). Raises ConfigError naming the key otherwise.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"tune: expected a mapping with keys {', '.join(KEYS)}, got {raw!r}")
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise ConfigError(f"unknown key tune.{unknown[0]}; expected one of {', '.join(KEYS)}")
    cycles = raw.get("cycles", [1])
    if cycles == "all":
        cycles = list(range(1, n_cycles + 1))
    if isinstance(cycles, int) and not isinstance(cycles, bool):
        cycles = [cycles]
    if (
        not isinstance(cycles, list)
        or not cycles
        or any(isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= n_cycles for c in cycles)
    ):
        raise ConfigError(
            f"tune.cycles: expected a non-empty list of cycles in 1..{n_cycles} (al.cycles) or 'all', got {cycles!r}"
        )
    folds = raw.get("folds", 3)
    is_int = isinstance(folds, int) and not isinstance(folds, bool)
    if not ((is_int and folds >= 2) or (isinstance(folds, float) and 0 < folds < 1)):
        raise ConfigError(
            f"tune.folds: expected an integer k >= 2 (k-fold) or a fraction in (0, 1) (one held-out split), got {folds!r}"
        )
    grid = _check_grid(raw.get("grid"))
    if optimizer not in grid:
        raise ConfigError(
            f"tune.grid.{optimizer}: missing; expected a grid for every optimizer of grid.optimizer "
            f"(write tune.grid.{optimizer}: {{}} to leave it untuned)"
        )
    mine = grid[optimizer] or {}
    if not mine:
        return None
    coerced = {
        hp: [registry.optimizer_params(optimizer, {hp: v}, f"tune.grid.{optimizer}")[hp] for v in values]
        for hp, values in mine.items()
    }
    return {"cycles": sorted(set(cycles)), "folds": folds, "grid": coerced}


def _check_grid(grid: Any) -> dict:
    """`tune.grid`: per optimizer, a mapping of hyper-parameter -> distinct values it accepts."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("tune.grid: expected a mapping of optimizer -> {hyper-parameter: [values]}")
    for name, params in grid.items():
        registry.check_name("optimizer", name, f"tune.grid.{name}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"tune.grid.{name}: expected a mapping of hyper-parameter -> list of values, got {params!r}")
        for hp, values in params.items():
            key = f"tune.grid.{name}.{hp}"
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{key}: expected a non-empty list of values, got {values!r}")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ConfigError(f"{key}: expected distinct values, got {values!r}")
            for v in values:
                registry.optimizer_params(name, {hp: v}, f"tune.grid.{name}")
    return grid


def grid_points(grid: dict) -> list[dict]:
    """The grid's points in grid order: the Cartesian product, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def cost_multiplier(spec: dict) -> float:
    """Training cost of a tuned cycle relative to an untuned one (fits x share of the labelled set)."""
    points = len(grid_points(spec["grid"]))
    folds = spec["folds"]
    per_point = (folds - 1) if isinstance(folds, int) else (1 - folds)
    return 1 + points * per_point


# ----------------------------------------------------------------------------------------------
def splits(labels: np.ndarray, folds: int | float, trial: int, cycle: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) positions into the labelled set: stratified by class, seeded from
    (trial, cycle). Falls back to unstratified splits when a class is too rare to stratify."""
    from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

    seed = int(seeding.rng(trial, cycle, 0, "tune-split").integers(2**31 - 1))
    x = np.zeros((len(labels), 1))
    if isinstance(folds, int):
        if len(labels) < folds:
            raise ConfigError(f"tune.folds: {folds} folds of a labelled set of {len(labels)}; expected fewer folds")
        tries = [StratifiedKFold(folds, shuffle=True, random_state=seed), KFold(folds, shuffle=True, random_state=seed)]
    else:
        tries = [
            StratifiedShuffleSplit(1, test_size=folds, random_state=seed),
            ShuffleSplit(1, test_size=folds, random_state=seed),
        ]
    for splitter in tries:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "the least populated class has only n members"
                out = [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(x, labels)]
        except ValueError:
            continue
        if all(len(tr) > 1 and len(va) > 0 for tr, va in out):
            return out
    raise ConfigError(f"tune.folds: cannot split a labelled set of {len(labels)} into {folds!r}; expected a larger labelled set")


# ----------------------------------------------------------------------------------------------
def side_file(run_dir: Path, cycle: int) -> Path:
    return Path(run_dir) / f"tune-c{cycle:03d}.json"


def read_side(path: Path, fingerprint: str, labelled_sha: str) -> tuple[dict, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, 0.0
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or data.get("fingerprint") != fingerprint
        or data.get("labelled_sha256") != labelled_sha
        or not isinstance(data.get("scores"), dict)
    ):
        return {}, 0.0
    return dict(data["scores"]), float(data.get("time_s") or 0.0)
