"""Atomic file writes: a reader (the report, `make status`, a resumed job) never sees half a file.

Every file that another process reads is written to a temporary file in the same directory,
fsynced, and renamed over the target; the directory is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
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


class DiskFull(OSError):
    """A write that found no space (or no quota) left; the message names the file and the bytes."""


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], point: str = "", size: int | None = None, durable: bool = True
) -> None:
    """Write `path` atomically: `write(f)` fills a temp file in the same directory, then rename.

    On any error the temp file is removed and the old `path` (if any) is untouched. A full disk or
    quota raises DiskFull naming `path`, the bytes the write needs (`size` when the caller knows
    it, else at least those written before the failure) and the bytes free there. `durable=False`
    skips the fsyncs: the file is whole or absent after the process dies, not after a power loss.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    written = 0
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            try:
                write(f)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            except OSError:
                written = f.tell()
                raise
        if point:
            pause_point(point)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, e, size, written) from None
        raise
    if durable:
        fsync_dir(path.parent)


def _disk_full(path: Path, e: OSError, size: int | None, written: int) -> DiskFull:
    try:
        free = f"{shutil.disk_usage(path.parent).free:,} bytes free there"
    except OSError:
        free = "free space unknown"
    need = f"{size:,} bytes" if size else f"at least {written:,} bytes" if written else "some bytes"
    what = "quota exceeded" if e.errno == errno.EDQUOT else "no space left on device"
    return DiskFull(e.errno, f"{what} (the write needs {need}, {free}); free space or raise the quota, then run again", str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes, point: str = "", durable: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), point, size=len(data), durable=durable)


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
