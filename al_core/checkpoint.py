"""Checkpoints: atomic, self-verifying, the last two kept, loaded with weights_only=True.

A file is one JSON header line (format, run fingerprint, position, payload length and sha256)
followed by the torch.save payload, so a truncated, corrupt or foreign file is recognised
before anything is unpickled. `pack` / `unpack` turn a cycle in training into that payload and
back; `resume_point` decides where a run restarts from its rows and its newest good checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from al_core.io import atomic_write

FORMAT = "al_core-checkpoint/1"
KEEP = 2  # good checkpoints kept per run; older ones are deleted
_NAME = re.compile(r"^ckpt-c(\d{3})-e(\d{4})-s(\d{5})\.pt$")


@dataclass(frozen=True)
class Position:
    """Where a checkpoint stands: `epoch` epochs and `step` steps of the next one done in `cycle`."""

    cycle: int
    epoch: int
    step: int = 0

    def filename(self) -> str:
        return f"ckpt-c{self.cycle:03d}-e{self.epoch:04d}-s{self.step:05d}.pt"


class BadCheckpoint(Exception):
    pass


log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """Running sums of the epoch in progress (host numbers, moved from the device once per stretch)."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0

    def means(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the images seen."""
        n = max(self.seen, 1)
        return self.loss_sum / n, self.correct / n


@dataclass
class Saved:
    """A checkpoint's payload with named fields (`pack` / `unpack`)."""

    labelled: np.ndarray
    queried: list[int]
    model: dict
    lossnet: dict | None
    optimizer: dict
    stats: EpochStats
    last_epoch: tuple
    epochs: list
    timing: dict
    tuned: dict | None = None
    tune_record: dict | None = None
    extra: dict = field(default_factory=dict)


def pack(run_id: str, cur, timing: dict) -> dict:
    """The payload of cycle `cur` (a loop.Cycle) in training; `timing` includes this process's costs.

    The on-disk keys are those of every earlier checkpoint ("accum" = [loss sum, correct, seen]),
    so a run started by an earlier version resumes.
    """
    return {
        "run_id": run_id,
        "labelled": torch.as_tensor(cur.labelled, dtype=torch.long),
        "queried": torch.as_tensor(cur.queried, dtype=torch.long),
        "model": cur.model.state_dict(),
        "lossnet": cur.lossnet.state_dict() if cur.lossnet is not None else None,
        "optimizer": cur.opt.state_dict(),
        "accum": [cur.stats.loss_sum, cur.stats.correct, cur.stats.seen],
        "last_epoch": list(cur.last_epoch),
        "epochs": list(cur.epochs),
        "timing": timing,
        "tuned": cur.tuned,
        "tune_record": cur.tune_record,
    }


def unpack(state: dict) -> Saved:
    loss_sum, correct, seen = state["accum"]
    return Saved(
        labelled=state["labelled"].numpy(),
        queried=state["queried"].tolist(),
        model=state["model"],
        lossnet=state["lossnet"],
        optimizer=state["optimizer"],
        stats=EpochStats(loss_sum, correct, int(seen)),
        last_epoch=tuple(state["last_epoch"]),
        epochs=list(state.get("epochs", [])),
        timing=dict(state["timing"]),
        tuned=state.get("tuned"),
        tune_record=state.get("tune_record"),
    )


class Resume(NamedTuple):
    start: int  # the first cycle to build (or restore); cycles + 1: nothing left but DONE
    restore: bool  # start from the checkpoint (its cycle is `start`) rather than a fresh model
    ignored: str | None = None  # why a checkpoint that exists is not used, for the log


def resume_point(rows: int, cycles: int, reset: bool, ckpt_cycle: int | None) -> Resume:
    """Where a run continues, from its finished rows and the cycle of its newest good checkpoint.

    The rows are the truth; a checkpoint only saves re-training. `rows` = n finished cycles.

    | checkpoint of cycle k       | train.reset | start          | restore | why                                   |
    |-----------------------------|-------------|----------------|---------|---------------------------------------|
    | k > n + 1                   | any         | as if none     | no      | ahead of the rows: not trusted        |
    | k < n                       | true        | as if none     | no      | only cycle n's model matters          |
    | otherwise                   | any         | k              | yes     | continue cycle k where it stopped     |
    | none, n == cycles           | any         | cycles + 1     | no      | every row is there; only DONE missing |
    | none                        | true        | max(1, n)      | no      | re-train cycle n to query cycle n + 1 |
    | none                        | false       | 1              | no      | weights carry over: replay from 1     |

    Replayed cycles re-derive their models deterministically and write no rows.
    """
    ignored = None
    if ckpt_cycle is not None and ckpt_cycle > rows + 1:
        ignored = f"checkpoint of cycle {ckpt_cycle} is ahead of cycles.jsonl ({rows} rows); ignored"
        ckpt_cycle = None
    elif ckpt_cycle is not None and reset and ckpt_cycle < rows:
        ckpt_cycle = None
    if ckpt_cycle is not None:
        return Resume(ckpt_cycle, True)
    if rows == cycles:
        return Resume(cycles + 1, False, ignored)
    return Resume(max(1, rows) if reset else 1, False, ignored)


def save(run_dir: Path, pos: Position, fingerprint: str, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically, then delete all but the newest KEEP."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        **asdict(pos),  # cycle, epoch, step
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = run_dir / pos.filename()

    def write(f):
        f.write(json.dumps(header).encode() + b"\n")
        f.write(payload)

    atomic_write(path, write, point="checkpoint")
    for old in list_checkpoints(run_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, newest position first."""
    found = []
    for p in Path(run_dir).glob("ckpt-*.pt"):
        m = _NAME.match(p.name)
        if m:
            found.append((tuple(map(int, m.groups())), p))
    return [p for _, p in sorted(found, reverse=True)]


def read(path: Path, fingerprint: str) -> tuple[Position, dict]:
    """Load and verify one checkpoint; raises BadCheckpoint saying what is wrong with it."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise BadCheckpoint(f"unreadable ({e.strerror})") from None
    if not blob:
        raise BadCheckpoint("empty file")
    line, sep, payload = blob.partition(b"\n")
    try:
        header = json.loads(line) if sep else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadCheckpoint(f"not a {FORMAT} file")
    if header.get("fingerprint") != fingerprint:
        raise BadCheckpoint(f"belongs to another config (fingerprint {header.get('fingerprint')}, this run {fingerprint})")
    if len(payload) != header.get("length"):
        raise BadCheckpoint(f"truncated ({len(payload)} of {header.get('length')} payload bytes)")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise BadCheckpoint("checksum mismatch (corrupt payload)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadCheckpoint(f"payload does not load ({type(e).__name__})") from None
    where = [header.get(k) for k in ("cycle", "epoch", "step")]
    if not all(type(v) is int and v >= 0 for v in where) or where[0] < 1:
        raise BadCheckpoint(f"its header's position (cycle, epoch, step) {where} is not three non-negative integers")
    pos = Position(*where)
    if pos.filename() != path.name.removesuffix(".bad"):
        raise BadCheckpoint(f"its header says {pos.filename()}, not its file name")
    _check_payload(state)
    return pos, state


def _check_payload(state: Any) -> None:
    """BadCheckpoint unless `unpack` can read `state` (a payload of the right run whose keys are
    missing or of the wrong kind would otherwise fail the run on every restart)."""
    try:
        unpack(state)
    except KeyError as e:
        raise BadCheckpoint(f"its payload lacks the key {e}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise BadCheckpoint(f"its payload is not a checkpoint's ({type(e).__name__}: {e})") from None


def latest_good(run_dir: Path, fingerprint: str) -> tuple[Position, dict] | None:
    """The newest checkpoint that verifies; each bad one is reported in one warning line and skipped."""
    for path in list_checkpoints(run_dir):
        try:
            return read(path, fingerprint)
        except BadCheckpoint as e:
            # Set aside (kept for inspection, no longer counted among the KEEP newest).
            bad = path.with_name(path.name + ".bad")
            try:
                path.replace(bad)
            except OSError:
                bad = path
            log.warning(
                "warning: checkpoint %s is unusable: %s; moved to %s, falling back to an older one", path.name, e, bad.name
            )
    return None


class Saver:
    """A run's checkpoints, as `Trainer.train` asks for them (`saver(cur, must)` after every epoch):
    written when it must (last epoch, stop request) or when train.checkpoint_every epochs and
    train.checkpoint_min_s seconds have passed. `meter` adds this process's memory and energy."""

    def __init__(self, run_dir: Path, run_id: str, fingerprint: str, train_cfg, meter) -> None:
        self.run_dir, self.run_id, self.fingerprint, self.train, self.meter = Path(run_dir), run_id, fingerprint, train_cfg, meter
        self.last = time.monotonic()

    def __call__(self, cur, must: bool) -> None:
        t = self.train
        periodic = (
            t.checkpoint_every and cur.epoch % t.checkpoint_every == 0 and time.monotonic() - self.last >= t.checkpoint_min_s
        )
        if must or periodic:
            timing = {**cur.timing, **dict(zip(("peak_mem_bytes", "energy_j"), self.meter.cycle_costs(cur.timing)))}
            save(self.run_dir, Position(cur.cycle, cur.epoch, cur.step), self.fingerprint, pack(self.run_id, cur, timing))
            self.last = time.monotonic()
