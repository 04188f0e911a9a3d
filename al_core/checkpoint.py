"""Checkpoints: atomic, self-verifying, the last two kept, loaded with weights_only=True.

A file is one JSON header line (format, run fingerprint, position, payload length and sha256)
followed by the torch.save payload, so a truncated, corrupt or foreign file is recognised
before anything is unpickled.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def save(run_dir: Path, pos: Position, fingerprint: str, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically, then delete all but the newest KEEP."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "cycle": pos.cycle,
        "epoch": pos.epoch,
        "step": pos.step,
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
    return Position(header["cycle"], header["epoch"], header["step"]), state


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
            print(f"warning: checkpoint {path.name} is unusable: {e}; moved to {bad.name}, falling back to an older one",
                  file=sys.stderr, flush=True)
    return None
