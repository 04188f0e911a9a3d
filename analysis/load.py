"""Reading a sweep's run directories (run.json, cycles.jsonl, DONE) into tidy pandas tables.

Damaged inputs are skipped with one `warning:` line per file on stderr; the report uses the rest.
"""

from __future__ import annotations

import hashlib

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from al_core.results import CYCLES, LIST_FIELDS, OPTIONAL_NUMBERS, REQUIRED, RUN_JSON, comparable, is_done, parse_run_id

BASE_KEYS = ["dataset", "model", "optimizer", "strategy"]

# Fields a row must carry (REQUIRED), may lack (OPTIONAL_NUMBERS) or holds as lists: al_core.results.
# `queried` holds thousands of pool indices per row and no table needs them: dropped on load.
DROPPED = ("queried",)


@dataclass(frozen=True)
class ExpectedRun:
    """A run the sweep's grid expands to (from `al_core.config.Sweep.runs()`)."""

    run_id: str
    model: str
    optimizer: str
    strategy: str
    trial: int
    config: Optional[dict] = field(default=None, compare=False)  # RunConfig.to_dict(): what run.json must record


@dataclass
class SweepData:
    """Everything read from a sweep directory."""

    cycles: pd.DataFrame  # one row per run x finished cycle, sorted by run_id, cycle
    runs: pd.DataFrame  # one row per run: run_id, keys, trial, status, done, cycles_expected
    keys: list[str]  # the columns that define a group besides trial: BASE_KEYS + extra grid axes
    sweep_dir: Path
    config: dict = field(default_factory=dict)  # the sweep's config (or one run's), for display
    config_source: str = ""
    expected_known: bool = False  # True when the run list came from the sweep file
    n_unexpected: int = 0  # run directories that are not part of the sweep's grid (ignored)
    # Runs whose directory holds what does not belong to them (another config, rows of another
    # run, a gap in the cycles, a conflicting duplicate): run_id, reason, included (--include-mismatched).
    left_out: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["run_id", "reason", "included"]))
    looks: list = field(default_factory=list)  # a sequential study's recorded looks (al_core.study), in wave order
    wave: int = 1  # the study's current wave


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def row_problem(row: object) -> Optional[str]:
    """Why a parsed cycles.jsonl line cannot be used, or None when it can."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in REQUIRED if row.get(k) is None]
    if missing:
        return "missing " + ", ".join(missing)
    for key, kind in REQUIRED.items():
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{key} is {type(value).__name__}"
    if not (0 <= row["test_accuracy"] <= 1 and 0 <= row["test_macro_f1"] <= 1):
        return "test_accuracy or test_macro_f1 outside [0, 1]"
    if row["cycle"] < 1 or row["n_labeled"] < 1 or row["n_pool"] < row["n_labeled"]:
        return "cycle, n_labeled or n_pool out of range"
    return None


def read_cycles(path: Path, run_id: str, conflicts: Optional[list] = None) -> list[dict]:
    """The usable rows of one cycles.jsonl, one per cycle; one warning line for whatever is not.
    Cycles written twice with different values are appended to `conflicts` (the first copy is returned)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        warn(f"{path}: missing; the run has no finished cycle to report")
        return []
    except (OSError, UnicodeDecodeError) as e:
        warn(f"{path}: unreadable ({e}); skipped")
        return []
    lines = text.splitlines()
    n_lines = sum(1 for line in lines if line.strip())
    if not n_lines:
        warn(f"{path}: empty; skipped")
        return []
    by_cycle: dict[int, dict] = {}
    problems: list[str] = []
    conflicts = conflicts if conflicts is not None else []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            problems.append(f"line {number}: not JSON (half-written?)")
            continue
        problem = row_problem(row)
        if problem is None and row["run_id"] != run_id:
            problem = f"run_id {row['run_id']!r} is not its directory's"
        if problem:
            problems.append(f"line {number}: {problem}")
            continue
        if isinstance(row.get("queried"), list):  # which samples, in a few bytes (pairs runs on the same set)
            row["queried_digest"] = hashlib.sha1(json.dumps(sorted(row["queried"])).encode()).hexdigest()[:12]
        for key in DROPPED:
            row.pop(key, None)
        if row["cycle"] in by_cycle:
            if comparable(row) != comparable(by_cycle[row["cycle"]]):
                conflicts.append(row["cycle"])
            continue  # the same cycle again (a re-executed write): the first copy stands
        by_cycle[row["cycle"]] = row
    if problems:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        warn(f"{path}: skipped {len(problems)} of {n_lines} lines ({shown})")
    return list(by_cycle.values())


def read_run_json(path: Path) -> dict:
    """run.json as a dict ({} with a warning when it is missing or damaged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        warn(f"{path}: missing; the run's keys are taken from its cycles or its name")
        return {}
    except (OSError, ValueError) as e:
        warn(f"{path}: unreadable or not JSON ({type(e).__name__}); ignored")
        return {}
    if not isinstance(data, dict):
        warn(f"{path}: not a JSON object; ignored")
        return {}
    return data


def load_sweep_dir(
    sweep_dir: str | os.PathLike,
    expected: Optional[Iterable[ExpectedRun]] = None,
    extra_axes: Iterable[str] = (),
    cycles_expected: Optional[int] = None,
    dataset: Optional[str] = None,
    include_mismatched: bool = False,
) -> SweepData:
    """Read every run directory under `<sweep_dir>/runs`.

    Parameters
    ----------
    expected : the sweep's runs, when the sweep file is known. Only these are reported; the
        others under runs/ are counted in `n_unexpected`. Without it every directory holding a
        run.json or cycles.jsonl is a run (completeness is then done vs in progress only).
    extra_axes : names of grid axes beyond model/optimizer/strategy/trial, in grid order; their
        values are read back from the run_id (README, Results layout). Unnamed extra parts of a
        run_id become one `variant` column.
    cycles_expected, dataset : cycles per run and dataset name from the sweep (optional).
    include_mismatched : report runs whose run.json records another config than the sweep's
        (a deliberate merge); they are still named in `left_out`. Runs whose rows belong to another
        run, or whose cycles have a gap or a conflicting duplicate, are always left out.

    Example
    -------
    >>> data = load_sweep_dir("results/demo")          # doctest: +SKIP
    >>> data.cycles.groupby("model").test_accuracy.max()  # doctest: +SKIP
    """
    sweep_dir = Path(sweep_dir)
    runs_dir = sweep_dir / "runs"
    found = sorted(e.name for e in os.scandir(runs_dir) if e.is_dir() and not e.name.startswith(".")) if runs_dir.is_dir() else []
    expected_by_id = {r.run_id: r for r in expected} if expected is not None else None
    run_ids = list(expected_by_id) if expected_by_id is not None else found
    n_unexpected = len(set(found) - set(expected_by_id)) if expected_by_id is not None else 0
    found_set = set(found)

    rows: list[dict] = []
    meta: list[dict] = []
    left_out: list[dict] = []
    first_config: tuple[str, dict] = ("", {})
    for run_id in run_ids:
        run_dir = runs_dir / run_id
        spec = expected_by_id.get(run_id) if expected_by_id is not None else None
        if run_id not in found_set or not ((run_dir / RUN_JSON).exists() or (run_dir / CYCLES).exists()):
            # A missing run is always expected; without a spec this is not a run directory
            # (with --results there is nothing to report).
            if spec is not None:
                status = "in progress" if run_id in found_set else "missing"
                meta.append(_run_meta(run_id, None, spec, {}, status, dataset, cycles_expected))
            continue
        info = read_run_json(run_dir / RUN_JSON)
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        if config and not first_config[1]:
            first_config = (run_id, config)
        conflicts: list[int] = []
        run_rows = read_cycles(run_dir / CYCLES, run_id, conflicts)
        status = "done" if is_done(run_dir) else "in progress"
        want = cycles_expected if status == "done" else None  # the sweep's al.cycles, when the sweep is known
        problem = run_problem(run_id, spec, config, run_rows, conflicts, dataset, want)
        if problem is not None:
            reason, includable = problem
            included = includable and include_mismatched
            warn(f"{run_dir}: {reason}; " + ("included (--include-mismatched)" if included else "left out of the report"))
            left_out.append({"run_id": run_id, "reason": reason, "included": included})
            if not included:
                status, run_rows = "left out", []
        rows.extend(run_rows)
        meta.append(_run_meta(run_id, run_rows[0] if run_rows else None, spec, config, status, dataset, cycles_expected))

    runs = pd.DataFrame(meta, columns=["run_id", *BASE_KEYS, "trial", "status", "cycles_expected"])
    runs["trial"] = runs["trial"].astype("int64")
    runs["done"] = runs["status"].eq("done")
    runs, keys = _add_extra_axes(runs, list(extra_axes))
    runs, keys = _add_config_keys(runs, keys, meta)
    cycles = _cycles_frame(rows, runs, keys)
    runs, cycles, keys = _add_precision_key(runs, cycles, keys)
    return SweepData(
        cycles=cycles,
        runs=runs,
        keys=keys,
        sweep_dir=sweep_dir,
        config=first_config[1],
        config_source=f"run.json of {first_config[0]}" if first_config[0] else "",
        expected_known=expected_by_id is not None,
        n_unexpected=n_unexpected,
        left_out=pd.DataFrame(left_out, columns=["run_id", "reason", "included"]),
    )


def run_problem(run_id, spec, config, rows, conflicts, dataset, cycles_done) -> Optional[tuple[str, bool]]:
    """Why a run directory does not belong to the report, and whether --include-mismatched may
    include it anyway (True only for a config that differs from the sweep's); None when it belongs.
    `cycles_done`: the cycles a finished (DONE) run must hold, when known."""
    if spec is not None and spec.config is not None and config:
        from al_core.config import config_diff  # the sweep is loaded already: al_core is importable

        diff = config_diff(config, spec.config)
        if diff:
            return f"run.json records another config than the sweep's (differs in {', '.join(diff[:5])})", True
    want = vars(spec) if spec is not None else parse_run_id(run_id)
    for row in rows:
        wrong = [k for k in ("model", "optimizer", "strategy", "trial") if k in want and row[k] != want[k]]
        if dataset and row["dataset"] != dataset:
            wrong.append("dataset")
        if wrong:
            k = wrong[0]
            return f"cycle {row['cycle']}'s row says {k} {row[k]!r}, not this run's {want.get(k, dataset)!r}", False
    if conflicts:
        return f"cycle {conflicts[0]} is written twice with different values", False
    numbers = sorted(r["cycle"] for r in rows)
    if numbers != list(range(1, len(numbers) + 1)):
        gap = min(set(range(1, numbers[-1] + 1)) - set(numbers))
        return f"its cycles are {_ranges(numbers)}: cycle {gap} is missing", False
    if cycles_done is not None and len(numbers) != int(cycles_done):
        return f"it is marked DONE with {len(numbers)} of {int(cycles_done)} cycles", False
    return None


def _ranges(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:8]))
    return shown + (", ..." if len(numbers) > 8 else "")


def _run_meta(run_id, row, spec, config, status, dataset, cycles_expected) -> dict:
    """The keys of one run, from its first row, else the sweep's spec, else run.json, else its name."""
    if row is not None:
        keys = {k: row[k] for k in (*BASE_KEYS, "trial")}
    else:
        parsed = parse_run_id(run_id)
        source = vars(spec) if spec is not None else {}
        keys = {}
        for k in ("model", "optimizer", "strategy", "trial"):
            value = source.get(k, config.get(k, parsed.get(k)))
            keys[k] = value if value is not None else ""
        keys["trial"] = int(keys["trial"]) if str(keys["trial"]).isdigit() else -1
        ds = config.get("dataset")
        keys["dataset"] = dataset or (ds.get("name") if isinstance(ds, dict) else ds) or ""
    if cycles_expected is None:
        al = config.get("al") if isinstance(config.get("al"), dict) else {}
        cycles_expected = al.get("cycles")
    return {"run_id": run_id, **keys, "status": status, "cycles_expected": cycles_expected, **_config_keys(config)}


# Keys a run's config sets without a grid axis (al_core/recipes.py, al_core/tune.py, ll.train_module):
# columns of every table, and so axes of the comparisons, once any run of the sweep uses them.
CONFIG_KEYS = {"recipe": "default", "tuning": "none", "train_module": "auto"}  # name: its default


def _config_keys(config: dict) -> dict:
    if not config:
        return {}
    tune = config.get("tune")
    if isinstance(tune, dict):
        tuning = "cycles " + ",".join(map(str, tune.get("cycles") or [])) + f"; folds {tune.get('folds')}"
    else:
        tuning = "none"
    ll = config.get("ll") if isinstance(config.get("ll"), dict) else {}
    return {"recipe": config.get("recipe") or "default", "tuning": tuning, "train_module": ll.get("train_module", "auto")}


def _add_config_keys(runs: pd.DataFrame, keys: list[str], meta: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Add `recipe`, `tuning`, `train_module` (from run.json) as keys when some run departs from the
    defaults (a recipe, tuning, the module trained always) and no grid axis already carries them."""
    axis_of = {"recipe": "optim.recipe", "tuning": "tune", "train_module": "ll.train_module"}
    for name, default in CONFIG_KEYS.items():
        values = pd.Series([m.get(name) for m in meta], index=runs.index, dtype=object)
        known = values.dropna()
        if known.empty or (known == default).all() or axis_of[name] in keys:
            continue
        # Runs without a run.json yet (missing, just started) take the value every other run shares.
        fill = known.iloc[0] if known.nunique() == 1 else default
        runs[name] = values.fillna(fill).astype(str)
        keys = [*keys, name]
    return runs, keys


def _add_extra_axes(runs: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Columns for the grid axes beyond the four, read from what follows `-t<trial>` in run_id."""
    prefix = runs["model"] + "-" + runs["optimizer"] + "-" + runs["strategy"] + "-t" + runs["trial"].astype(str)
    suffix = [rid[len(p) + 1 :] if rid.startswith(p + "-") else "" for rid, p in zip(runs["run_id"], prefix)]
    if not any(suffix):
        return runs, list(BASE_KEYS)
    parts = [s.split("-") for s in suffix]
    if names and all(len(p) == len(names) for p in parts):
        for i, name in enumerate(names):
            runs[name] = _typed([p[i] for p in parts])
        return runs, [*BASE_KEYS, *names]
    runs["variant"] = suffix
    return runs, [*BASE_KEYS, "variant"]


def _add_precision_key(runs: pd.DataFrame, cycles: pd.DataFrame, keys: list[str]):
    """`precision` (the row field: what a cycle trained in) as a key when the runs trained in more
    than one: runs of different precisions are then never paired or pooled. A run whose cycles
    mixed precisions gets them joined ("bf16+fp32"), a precision of its own."""
    if "precision" not in cycles or "precision" in keys:
        return runs, cycles, keys
    known = cycles.dropna(subset=["precision"])
    per_run = known.groupby("run_id", sort=True)["precision"].agg(lambda v: "+".join(sorted(set(map(str, v)))))
    if per_run.nunique() < 2:
        return runs, cycles, keys
    fill = per_run.mode().iloc[0]  # runs without a finished cycle yet
    runs = runs.assign(precision=runs["run_id"].map(per_run).fillna(fill).astype(str))
    cycles = cycles.drop(columns=["precision"]).merge(runs[["run_id", "precision"]], on="run_id", how="left")
    return runs, cycles.sort_values(["run_id", "cycle"], kind="stable").reset_index(drop=True), [*keys, "precision"]


def _flatten_tuned(cycles: pd.DataFrame) -> pd.DataFrame:
    """The row's `tuned` mapping as scalar columns `tuned.<hyper-parameter>` and the winner's
    validation accuracy as `tune_val_accuracy` (the grid's scores stay in cycles.jsonl)."""
    if "tuned" in cycles:
        tuned = cycles["tuned"].map(lambda d: d if isinstance(d, dict) else {})
        names = sorted({k for d in tuned for k in d})
        for name in names:
            cycles[f"tuned.{name}"] = tuned.map(lambda d: d.get(name))
        cycles = cycles.drop(columns=["tuned"])
    if "tune" in cycles:
        cycles["tune_val_accuracy"] = cycles["tune"].map(lambda d: d.get("val_accuracy") if isinstance(d, dict) else None)
        cycles = cycles.drop(columns=["tune"])
    return cycles


def _typed(values: list[str]) -> pd.Series:
    """An axis' values as numbers when every one reads as a number (train.width: 8 < 16), else text."""
    column = pd.Series(values, dtype=object)
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def _cycles_frame(rows: list[dict], runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    cycles = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(REQUIRED))
    for name in OPTIONAL_NUMBERS:
        cycles[name] = pd.to_numeric(cycles[name], errors="coerce") if name in cycles else np.nan
    for name in ("trial", "cycle", "n_labeled", "n_pool"):
        cycles[name] = cycles[name].astype("int64")
    for name in ("test_accuracy", "test_macro_f1"):
        cycles[name] = cycles[name].astype("float64")
    for name in ("device", *LIST_FIELDS):
        if name not in cycles:
            cycles[name] = None
    # `diverged` ({"cycle", "epoch"} in the rows where it happened): a flag per cycle
    cycles["diverged"] = cycles["diverged"].map(lambda d: isinstance(d, dict)) if "diverged" in cycles else False
    cycles = _flatten_tuned(cycles)
    extra = [k for k in keys if k not in BASE_KEYS]
    if extra:
        cycles = cycles.drop(columns=[k for k in extra if k in cycles]).merge(runs[["run_id", *extra]], on="run_id", how="left")
    return cycles.sort_values(["run_id", "cycle"], kind="stable").reset_index(drop=True)
