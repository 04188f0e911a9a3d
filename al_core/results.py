"""What a run leaves on disk and what its exit status means, spelled once and without torch.

- the cycles row: its fields in order with their JSON types, the fields that differ between two
  executions of the same run, and one constructor (`cycle_row`) that the run loop, the synthetic
  sweeps of bench/ and the tests all use;
- run ids: `<model>-<optimizer>-<strategy>-t<trial>[-<extra axes>]`, formatted and parsed here;
- the run directory's file names (run.json, cycles.jsonl, DONE, the lock) and `is_done`;
- the exit codes shared by `al_core.run`, SLURM jobs, packed tasks and `al-sweep`.

al_core writes these files; slurm, analysis and bench read them through this module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

# ---------------------------------------------------------------------------------------------- exit codes
EXIT_OK = 0
EXIT_FAILED = 1  # an I/O failure (disk full, not writable), or a run of a task failed
EXIT_USAGE = 2  # a bad sweep file, override or command line: one `error:` line
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: interrupted (a checkpoint is on disk) or locked: run me again to resume
EXIT_NODE = 78  # EX_CONFIG: this node cannot serve the run (GPU unusable or unserved, dataset missing)

# ---------------------------------------------------------------------------------------------- run directory
RUN_JSON = "run.json"  # the run's resolved config
CYCLES = "cycles.jsonl"  # one row per finished cycle
DONE = "DONE"  # the run finished: written last, atomically
LOCK = ".lock"  # one writer at a time (al_core.rundir)


def is_done(run_dir: Path) -> bool:
    """Whether the run in `run_dir` finished (its DONE file exists)."""
    return (Path(run_dir) / DONE).exists()


# ---------------------------------------------------------------------------------------------- run ids
RUN_ID = re.compile(r"^(?P<model>[^-]+)-(?P<optimizer>[^-]+)-(?P<strategy>[^-]+)-t(?P<trial>\d+)(?:-(?P<rest>.*))?$")


def run_id(model: str, optimizer: str, strategy: str, trial: int, extra: tuple[str, ...] = ()) -> str:
    """`resnet18-sgd-margin-t0`, with the parts of extra grid axes appended (`-w16`)."""
    return "-".join([model, optimizer, strategy, f"t{trial}", *extra])


def parse_run_id(text: str) -> dict:
    """model, optimizer, strategy, trial (int) and rest (the extra axes' parts, or None); {} if not a run id."""
    m = RUN_ID.match(text)
    if not m:
        return {}
    parts = m.groupdict()
    parts["trial"] = int(parts["trial"])
    return parts


# ---------------------------------------------------------------------------------------------- the cycles row
# Every row carries these, in this order (extra grid axes follow `trial` under their dotted keys).
# A type of None: a number, or null where the machine cannot measure it (CPU memory and energy).
KEYS = {"run_id": str, "dataset": str, "model": str, "optimizer": str, "strategy": str, "trial": int}
MEASURES = {
    "cycle": int,
    "n_labeled": int,
    "n_pool": int,
    "queried": list,
    "queried_class_counts": list,
    "test_accuracy": float,
    "test_macro_f1": float,
    "per_class_accuracy": list,
    "train_loss": float,
    "train_accuracy": float,
    "epochs": int,
    "train_time_s": float,
    "select_time_s": float,
    "eval_time_s": float,
    "train_img_per_s": float,
    "peak_mem_bytes": None,
    "energy_j": None,
    "device": str,
    "precision": str,
    "deterministic": bool,
    "recipe": str,
    "tuned": dict,
}
FIELDS = (*KEYS, *MEASURES)
# Written only where they apply: the stochastic batch's law, the decay in force under
# optim.wd_normalized, the tuning record and its time.
# `diverged`: {"cycle", "epoch"} where the training loss stopped being finite (al_core.trainer).
WHERE_THEY_APPLY = ("stochastic", "weight_decay", "tune", "tune_time_s", "diverged")
# Fields a reader needs (analysis.load), with their JSON types.
REQUIRED = {
    **KEYS,
    "cycle": int,
    "n_labeled": int,
    "n_pool": int,
    "test_accuracy": (int, float),
    "test_macro_f1": (int, float),
}
# Fields that may be null or absent (older rows; CPU runs have no memory or energy counter).
OPTIONAL_NUMBERS = ("train_time_s", "select_time_s", "eval_time_s", "peak_mem_bytes", "energy_j")
LIST_FIELDS = ("queried_class_counts", "per_class_accuracy")
# Differ between two executions of the same run: what `comparable` leaves out.
VOLATILE_FIELDS = (
    "train_time_s",
    "select_time_s",
    "eval_time_s",
    "train_img_per_s",
    "peak_mem_bytes",
    "energy_j",
    "device",
    "tune_time_s",
)


def cycle_row(axes: Optional[dict] = None, **values: Any) -> dict:
    """One cycles.jsonl row: every field of KEYS and MEASURES by keyword (a field the caller cannot
    know, such as train_loss in a simulation, may be left out), `axes` (extra grid axes) after
    `trial`, then the fields of WHERE_THEY_APPLY that are given. Unknown names raise."""
    unknown = set(values) - set(FIELDS) - set(WHERE_THEY_APPLY)
    if unknown:
        raise TypeError(f"cycle_row: unknown fields {sorted(unknown)}; expected those of al_core.results.FIELDS")
    missing = [k for k in (*KEYS, *REQUIRED) if k not in values]
    if missing:
        raise TypeError(f"cycle_row: missing fields {missing}")
    row = {k: values[k] for k in KEYS}
    row.update(axes or {})
    row.update({k: values[k] for k in (*MEASURES, *WHERE_THEY_APPLY) if k in values})
    return row


def comparable(row: dict) -> dict:
    """A row without the fields that differ between executions (timing, memory, energy, device)."""
    return {k: v for k, v in row.items() if k not in VOLATILE_FIELDS}
