"""Hyper-parameter selection inside the active-learning loop (the sweep's `tune:` section).

At the cycles the sweep lists, every configuration of the run's optimizer is scored on validation
split(s) held out of the *current labelled set* (k stratified folds, or one stratified held-out
fraction), seeded from (trial, cycle, "tune-split"). The point with the best mean validation
accuracy wins (ties: the first in order); the cycle's model is then trained on the whole
labelled set with it. At later cycles not listed, the last chosen values are reused. Only pool
labels of the labelled set are read: the test set never takes part in a choice.

Each fit is trained exactly as the cycle's model would be (same epochs, schedule, batch size,
augmentation streams, loss-prediction module if the run trains one, same starting weights,
same decay groups). With `optim.wd_normalized` the grid's weight_decay values are normalised ones:
each fit's decay is scaled to its own training folds (al_core.optim.normalized_decay), as the
cycle's model is to the whole labelled set, so the chosen value transfers between the two.
Finished (grid point, fold) scores go to `tune-cNNN.json` in the run directory, written
atomically after every fit, so a run killed while tuning loses at most the fit in progress.

The configurations: the Cartesian product of `tune.grid.<optimizer>`'s lists, or, where it gives
ranges {low, high, scale}, `tune.points` quasi-random draws (`configurations`: seeded from (trial,
cycle), the same after a kill and resume). Every tuned optimizer of a sweep gets the same number
of configurations, folds and epochs: an equal tuning budget (`budget`), refused otherwise. The
chosen values and which of them sit at an edge of what was searched (`edges`) are recorded.

Cost: a tuned cycle trains 1 + P * (k - 1) times the labelled set's worth of epochs with k folds,
1 + P * (1 - f) times with a held-out fraction f (P configurations).
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from al_core import registry, seeding
from al_core.errors import ConfigError

FORMAT = "al_core-tune/1"
KEYS = ("cycles", "folds", "grid", "points")
SCALES = ("log", "linear", "log1m")  # a range's scale: log-uniform, uniform, log-uniform of 1 - value (beta2)
EDGE = 0.1  # a value chosen from a range is at its edge within this fraction of the range (on its scale)
BETAS = ("beta1", "beta2")  # searched one at a time, written into `betas` (al_core.tune.as_params)


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
    points = _check_points(raw.get("points"), grid)
    if optimizer not in grid:
        raise ConfigError(
            f"tune.grid.{optimizer}: missing; expected a grid for every optimizer of grid.optimizer "
            f"(write tune.grid.{optimizer}: {{}} to leave it untuned)"
        )
    mine = grid[optimizer] or {}
    if not mine:
        return None
    where = f"tune.grid.{optimizer}"
    coerced = {
        hp: _coerce_range(values, optimizer, hp, where)
        if isinstance(values, dict)
        else [_coerce(optimizer, hp, v, where) for v in values]
        for hp, values in mine.items()
    }
    spec = {"cycles": sorted(set(cycles)), "folds": folds, "grid": coerced}
    if any(isinstance(v, dict) for v in coerced.values()):  # a grid of lists keeps the fingerprint it had
        spec["points"] = points
    return spec


def _check_grid(grid: Any) -> dict:
    """`tune.grid`: per optimizer, a mapping of hyper-parameter -> distinct values it accepts, or a
    range {low, high, scale} to search; every tuned optimizer gets the same number of configurations."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("tune.grid: expected a mapping of optimizer -> {hyper-parameter: [values] or {low, high, scale}}")
    for name, params in grid.items():
        registry.check_name("optimizer", name, f"tune.grid.{name}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"tune.grid.{name}: expected a mapping of hyper-parameter -> list of values, got {params!r}")
        for hp, values in params.items():
            key = f"tune.grid.{name}.{hp}"
            if isinstance(values, dict):
                _coerce_range(values, name, hp, f"tune.grid.{name}")
                continue
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{key}: expected a non-empty list of values or a range {{low, high, scale}}, got {values!r}")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ConfigError(f"{key}: expected distinct values, got {values!r}")
            for v in values:
                _coerce(name, hp, v, f"tune.grid.{name}")
    return grid


def _check_points(points: Any, grid: dict) -> int | None:
    """`tune.points`: configurations drawn per optimizer when a grid has ranges (None without ranges).
    Refuses tuning budgets that differ between optimizers: the same number of configurations each."""
    searched = [n for n, p in grid.items() if any(isinstance(v, dict) for v in (p or {}).values())]
    if searched and (isinstance(points, bool) or not isinstance(points, int) or points < 1):
        raise ConfigError(
            f"tune.points: expected an integer >= 1 (configurations per optimizer) with ranges in tune.grid.{searched[0]}, got {points!r}"
        )
    if not searched and points is not None:
        raise ConfigError(f"tune.points: expected no value without a range {{low, high, scale}} in tune.grid, got {points!r}")
    counts = {n: (points if n in searched else math.prod(len(v) for v in p.values())) for n, p in grid.items() if p}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{n} {c}" for n, c in counts.items())
        raise ConfigError(
            f"tune.grid: unequal tuning budgets ({shown} configurations); expected the same number for every tuned optimizer"
        )
    return points if searched else None


def _coerce(optimizer: str, hp: str, value: Any, where: str) -> Any:
    """One tuned value as the optimizer takes it (beta1 / beta2: a number in [0, 1), into `betas`)."""
    defaults = registry.OPTIMIZERS.get(optimizer).defaults
    if hp in BETAS and "betas" in defaults:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(f"{where}.{hp}: expected a number in [0, 1), got {value!r}")
        return float(value)
    return registry.optimizer_params(optimizer, {hp: value}, where)[hp]


def _coerce_range(r: dict, optimizer: str, hp: str, where: str) -> dict:
    """A range {low, high, scale (log)} whose ends the optimizer accepts, low < high, valid on its scale."""
    key = f"{where}.{hp}"
    if set(r) - {"low", "high", "scale"} or not {"low", "high"} <= set(r):
        raise ConfigError(f"{key}: expected a range {{low, high, scale}} (scale: {', '.join(SCALES)}), got {r!r}")
    scale = r.get("scale", "log")
    if scale not in SCALES:
        raise ConfigError(f"{key}.scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    low, high = (_coerce(optimizer, hp, r[k], where) for k in ("low", "high"))
    if not isinstance(low, float) or not low < high:
        raise ConfigError(f"{key}: expected numbers low < high, got {r!r}")
    if (scale == "log" and low <= 0) or (scale == "log1m" and high >= 1):
        bound = "low > 0" if scale == "log" else "high < 1"
        raise ConfigError(f"{key}: scale {scale} needs {bound}, got {r!r}")
    return {"low": low, "high": high, "scale": scale}


def grid_points(grid: dict) -> list[dict]:
    """The grid's points in grid order: the Cartesian product, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def n_configurations(spec: dict) -> int:
    """Configurations scored per tuned cycle: the grid's points, or `points` drawn from its ranges."""
    return spec["points"] if "points" in spec else len(grid_points(spec["grid"]))


def configurations(spec: dict, trial: int, cycle: int) -> list[dict]:
    """The configurations scored at `cycle`: the grid's points in grid order, or with ranges
    `points` draws of a scrambled Halton sequence (scipy.stats.qmc) seeded from (trial, cycle), one
    dimension per hyper-parameter in the sweep file's order: a range maps its coordinate onto its
    scale (rounded to 3 significant digits; of 1 - value for log1m), a list picks by it. Every
    strategy of a trial gets the same draws at a cycle, and a resumed run the same again."""
    if "points" not in spec:
        return grid_points(spec["grid"])
    from scipy.stats import qmc

    seed = int(seeding.rng(trial, cycle, 0, "tune-search").integers(2**31 - 1))
    hps = list(spec["grid"])
    u = qmc.Halton(len(hps), scramble=True, seed=seed).random(spec["points"])
    return [{hp: _at(spec["grid"][hp], float(x)) for hp, x in zip(hps, row)} for row in u]


def _at(values, u: float):
    """The value at position u in [0, 1) of a list or a range."""
    if isinstance(values, list):
        return values[min(int(u * len(values)), len(values) - 1)]
    low, high, scale = values["low"], values["high"], values["scale"]
    if scale == "linear":
        v = float(f"{low + u * (high - low):.3g}")
    elif scale == "log":
        v = float(f"{low * (high / low) ** u:.3g}")
    else:
        v = 1 - float(f"{(1 - low) * ((1 - high) / (1 - low)) ** u:.3g}")
    return min(max(v, low), high)


def position(values, v) -> float | None:
    """Where `v` sits in a list (0: its smallest value, 1: its largest) or a range (on its scale);
    None for a single value or values that are no numbers."""
    if isinstance(values, list):
        nums = [x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if len(nums) < 2 or len(nums) != len(values) or min(nums) == max(nums):
            return None
        return (v - min(nums)) / (max(nums) - min(nums))
    low, high, scale = values["low"], values["high"], values["scale"]
    if scale == "linear":
        return (v - low) / (high - low)
    if scale == "log":
        return math.log(v / low) / math.log(high / low)
    return math.log((1 - v) / (1 - low)) / math.log((1 - high) / (1 - low))


def edges(spec: dict, chosen: dict) -> dict:
    """The chosen values at an edge of what was searched: {hp: "low" | "high"}. In a list: its
    smallest or largest value; in a range: within EDGE of either end on its scale. A value at an
    edge says the best may lie outside what was searched."""
    out = {}
    for hp, values in spec["grid"].items():
        pos = position(values, chosen.get(hp)) if hp in chosen else None
        if pos is None:
            continue
        tol = 1e-9 if isinstance(values, list) else EDGE
        if pos <= tol:
            out[hp] = "low"
        elif pos >= 1 - tol:
            out[hp] = "high"
    return out


def as_params(base: dict, tuned: dict | None) -> dict:
    """The optimizer's hyper-parameters `base` with tuned values over them (beta1 / beta2 into betas)."""
    h = {**base, **{k: v for k, v in (tuned or {}).items() if k not in BETAS}}
    for i, name in enumerate(BETAS):
        if tuned and name in tuned and "betas" in h:
            h["betas"] = [*h["betas"][:i], tuned[name], *h["betas"][i + 1 :]]
    return h


def cost_multiplier(spec: dict) -> float:
    """Training cost of a tuned cycle relative to an untuned one (fits x share of the labelled set)."""
    folds = spec["folds"]
    per_point = (folds - 1) if isinstance(folds, int) else (1 - folds)
    return 1 + n_configurations(spec) * per_point


def budget(spec: dict | None, epochs: int) -> dict:
    """A run's tuning budget per tuned cycle: configurations, fits (configurations x folds) and the
    epochs those fits train (fits x epochs). Equal for every optimizer of a sweep (tune.grid checks)."""
    if spec is None:
        return {"configurations": 0, "fits": 0, "epochs": 0}
    n = n_configurations(spec)
    fits = n * (spec["folds"] if isinstance(spec["folds"], int) else 1)
    return {"configurations": n, "fits": fits, "epochs": fits * epochs}


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


def read_side(path: Path, fingerprint: str, labelled_sha: str, points: list | None = None) -> tuple[dict, float]:
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
        or (points is not None and data.get("points", points) != points)
    ):
        return {}, 0.0
    return dict(data["scores"]), float(data.get("time_s") or 0.0)
