"""The report's file writes, atomic through al_core.io: a reader never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path

from al_core.io import atomic_write_bytes


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; on error the old file (if any) is left as it was."""
    atomic_write_bytes(path, data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
