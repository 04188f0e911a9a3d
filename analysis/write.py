"""Atomic writes for the report's files: a temporary file in the same directory, then os.replace.

A reader (a browser refreshing report.html, a script polling a CSV) never sees half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# mkstemp creates files readable by their owner only; give report files the usual umask mode
# so that the rest of the group can read them on a shared cluster file system.
_UMASK = os.umask(0)
os.umask(_UMASK)
_MODE = 0o666 & ~_UMASK


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; on error the old file (if any) is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _MODE)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
