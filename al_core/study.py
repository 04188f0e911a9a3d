"""A study's `analysis:` section (primary questions, margin, trials in waves) and, for a sequential
study, its state on disk: which waves have started and what each look decided.

<sweep_dir>/study/study.json   {"waves": [{"wave": 1, "trials": 5, "started_at": ...}, ...]}
<sweep_dir>/study/wave-NNN     created with O_EXCL by whoever starts wave NNN: exactly once
<sweep_dir>/study/look-NNN.json the verdicts at the end of wave NNN and what follows (analysis.report)

Plain JSON, written atomically; nothing here is unpickled or imported.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

from al_core.errors import ConfigError
from al_core.io import atomic_write_json

SEQUENTIAL_KEYS = ("first", "step", "max")
KEYS = ("primary", "margin", "sequential", "max_device_hours")


def check(section: Any, grid: Any) -> Optional[dict]:
    """The `analysis:` section with defaults filled in (None when absent); ConfigError naming the key."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"analysis: expected a mapping with keys {', '.join(KEYS)}, got {section!r}")
    for key in section:
        if key not in KEYS:
            raise ConfigError(f"unknown key analysis.{key}; expected one of {', '.join(KEYS)}")
    out: dict = {"primary": None, "margin": 1.0, "sequential": None, "max_device_hours": None}
    primary = section.get("primary")
    if primary is not None:
        if not isinstance(primary, list) or not primary or not all(isinstance(q, str) and q.strip() for q in primary):
            raise ConfigError(
                "analysis.primary: expected a list of question names as questions.csv spells them "
                f"(optimizer, model, model:optimizer, '<strategy> vs random'), got {primary!r}"
            )
        if len(set(primary)) != len(primary):
            raise ConfigError(f"analysis.primary: expected distinct questions, got {primary!r}")
        strategies = set((grid or {}).get("strategy") or []) if isinstance(grid, dict) else set()
        for q in primary:
            if q in ("optimizer", "model", "model:optimizer"):
                continue
            s = q.removesuffix(" vs random")
            if q == s or (strategies and (s not in strategies or "random" not in strategies)):
                raise ConfigError(
                    f"analysis.primary: {q!r} is not a question of this sweep; expected optimizer, model, "
                    "model:optimizer or '<strategy> vs random' for a strategy of grid.strategy (with random in it)"
                )
        out["primary"] = list(primary)
    margin = section.get("margin", 1.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < math.inf:
        raise ConfigError(f"analysis.margin: expected a positive number of AUBC points, got {margin!r}")
    out["margin"] = float(margin)
    hours = section.get("max_device_hours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours < math.inf):
        raise ConfigError(f"analysis.max_device_hours: expected a positive number of hours, got {hours!r}")
    out["max_device_hours"] = None if hours is None else float(hours)
    out["sequential"] = _check_sequential(section.get("sequential"), grid)
    return out


def _check_sequential(seq: Any, grid: Any) -> Optional[dict]:
    if seq is None:
        return None
    if not isinstance(seq, dict) or set(seq) - set(SEQUENTIAL_KEYS):
        raise ConfigError(f"analysis.sequential: expected a mapping with keys first, step, max, got {seq!r}")
    out = {"first": seq.get("first", 5), "step": seq.get("step", 5), "max": seq.get("max", 30)}
    for key, value in out.items():
        if type(value) is not int or value < (2 if key != "step" else 1):
            raise ConfigError(f"analysis.sequential.{key}: expected an integer >= {2 if key != 'step' else 1}, got {value!r}")
    if out["max"] < out["first"]:
        raise ConfigError(f"analysis.sequential: max {out['max']} is below first {out['first']}; expected first <= max")
    if isinstance(grid, dict) and "trial" in grid:
        raise ConfigError(
            "grid.trial: a sequential study numbers its trials in waves (analysis.sequential); "
            "expected no grid.trial, or no analysis.sequential for a fixed number of trials"
        )
    return out


# ---------------------------------------------------------------------------------------------- state
def folder(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / "study"


def read(sweep_dir: str | os.PathLike) -> dict:
    """study.json ({"waves": []} when there is none); ConfigError when it is damaged."""
    path = folder(sweep_dir) / "study.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"waves": []}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}); expected the study's record of its waves") from None
    waves = data.get("waves") if isinstance(data, dict) else None
    if not isinstance(waves, list) or not all(isinstance(w, dict) and type(w.get("trials")) is int for w in waves):
        raise ConfigError(f'{path}: not a study record; expected {{"waves": [{{"wave": 1, "trials": 5}}, ...]}}')
    return data


def trials(sweep_dir: str | os.PathLike, seq: dict) -> int:
    """The trials of the study's current wave: the last started one, else `first`."""
    waves = read(sweep_dir)["waves"]
    return min(waves[-1]["trials"], seq["max"]) if waves else seq["first"]


def wave_of(sweep_dir: str | os.PathLike, n_trials: int, first: int) -> Optional[int]:
    """The wave of a sweep loaded with `n_trials` trials (every wave has more than the one before);
    None when no wave has that many."""
    for w in reversed(read(sweep_dir)["waves"]):
        if w["trials"] == n_trials:
            return int(w["wave"])
    return 1 if n_trials == first else None


def current_wave(sweep_dir: str | os.PathLike) -> int:
    waves = read(sweep_dir)["waves"]
    return int(waves[-1]["wave"]) if waves else 1


def start_wave(sweep_dir: str | os.PathLike, wave: int, n_trials: int, why: str, first: int) -> bool:
    """Record wave `wave` with `n_trials` trials; True for the one caller that claims it (O_EXCL),
    False when it was claimed before (then nothing is written). A claim whose record was cut short
    (a kill between the two writes) is completed by the next caller, which still returns False."""
    path = folder(sweep_dir)
    path.mkdir(parents=True, exist_ok=True)
    claimed = True
    try:
        os.close(os.open(path / f"wave-{wave:03d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        claimed = False
    data = read(sweep_dir)
    if not any(w.get("wave") == wave for w in data["waves"]):
        if not data["waves"] and wave > 1:  # the first wave ran on `first` trials without a record
            data["waves"].append({"wave": 1, "trials": first, "started_at": None, "why": "first wave"})
        data["waves"].append({"wave": wave, "trials": n_trials, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "why": why})
        atomic_write_json(path / "study.json", data)
    return claimed


def write_look(sweep_dir: str | os.PathLike, wave: int, look: dict) -> Path:
    path = folder(sweep_dir) / f"look-{wave:03d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, look)
    return path


def looks(sweep_dir: str | os.PathLike) -> list[dict]:
    """The recorded looks, in wave order (damaged files skipped: a look is rewritten by the next report)."""
    out = []
    for p in sorted(folder(sweep_dir).glob("look-*.json")):
        try:
            look = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(look, dict) and type(look.get("wave")) is int:
            out.append(look)
    return out
