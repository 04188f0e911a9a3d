"""Atomic file writes: a reader (the report, `make status`, a resumed job) never sees half a file.

Every file that another process reads is written to a temporary file in the same directory,
fsynced, and renamed over the target; the directory is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, BinaryIO

# Test hook: AL_PAUSE_AT=<point>[:<n>] makes the writer stop itself (SIGSTOP) right before the
# rename of the n-th write at that point (default the first), so that a test's SIGKILL lands in the
# middle of a write. Points: checkpoint, rows, run_json, done.
_PAUSE_ENV = "AL_PAUSE_AT"
_pause_counts: dict[str, int] = {}

# mkstemp creates 0600 files; results are shared with a research group, so honour the umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def pause_point(name: str) -> None:
    """Stop this process at a named point when a test asked for it (no-op otherwise)."""
    want = os.environ.get(_PAUSE_ENV)
    if not want:
        return
    point, _, nth = want.partition(":")
    if point != name:
        return
    _pause_counts[name] = _pause_counts.get(name, 0) + 1
    if _pause_counts[name] == int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGSTOP)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], point: str = "", durable: bool = True) -> None:
    """Write `path` atomically: `write(f)` fills a temp file in the same directory, then rename.

    On any error the temp file is removed and the old `path` (if any) is untouched. `durable=False`
    skips the fsyncs: the file is whole or absent after the process dies, not after a power loss.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if point:
            pause_point(point)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, point: str = "", durable: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), point, durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, point: str = "") -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode(), point)


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict], point: str = "") -> None:
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in rows)
    atomic_write_bytes(path, text.encode(), point)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file; a missing file is no rows. A damaged line raises ValueError."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not JSON ({e.msg})") from None
    return rows


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
