"""Exclusive file locks that hold or refuse: a run directory's lock (al_core.rundir) and a sweep's
submission lock (slurm.ledger).

- The lock file is opened with O_NOFOLLOW and must be a regular file: a symbolic link, a FIFO or a
  device planted in its place is refused, never followed (the holder's line is written into it).
- Once locked, the descriptor must still be the file at the path (fstat against stat): a lock
  file that was set aside or replaced meanwhile is let go and the new one locked.
- Only EWOULDBLOCK/EAGAIN means that another process holds the lock. ENOLCK, ENOSYS and
  EOPNOTSUPP (a file system without flock: NFS mounted `nolock` with no lock daemon, Lustre
  mounted `noflock`) raise LockError: one line naming the file system and what to do.
- A file system whose flock locks other nodes never see is refused before locking (LockError):
  NFS mounted `nolock` or `local_lock=flock|all`, Lustre mounted `localflock`. There each node
  would hold "the" lock of a run by itself, and two nodes could write one run.
- `AL_LOCK=none` in the environment (the jobs inherit it) takes no lock at all: for a file system
  where no lock reaches every node. Then nothing stops two processes from writing one run
  directory or submitting one sweep at once; keep to one `make sweep` at a time and never start
  a run by hand while its job may be running.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from al_core.errors import NodeError

ENV = "AL_LOCK"
MODES = ("flock", "none")
MOUNTINFO = Path("/proc/self/mountinfo")
HELD = (errno.EWOULDBLOCK, errno.EAGAIN)
UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
RETRIES = 5  # a lock file replaced this often while being locked: refused (LockError)


class LockError(NodeError):
    """This file system cannot give the lock its meaning; the message says which and what to do."""


def lock_mode() -> str:
    """`flock` (default) or `none`, from AL_LOCK."""
    mode = os.environ.get(ENV, "").strip().lower() or "flock"
    if mode not in MODES:
        raise LockError(f"{ENV}={os.environ[ENV]!r}: expected one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str
    options: frozenset[str]  # the mount's options and the file system's own (super) options

    def describe(self) -> str:
        return f"{self.point} ({self.fstype} from {self.source})"


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (space \\040, tab \\011, newline \\012, backslash \\134)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/self/mountinfo's lines (see proc(5)); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        options = set(fields[5].split(",")) | (set(tail[2].split(",")) if len(tail) > 2 else set())
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1]), frozenset(options)))
    return mounts


def mount_of(path: str | os.PathLike) -> Mount | None:
    """The mount holding `path` (the longest mount point above it; the last one mounted there),
    or None where /proc/self/mountinfo cannot be read."""
    try:
        mounts = parse_mountinfo(MOUNTINFO.read_text())
    except OSError:
        return None
    real = os.path.realpath(path)
    best: Mount | None = None
    for m in mounts:
        inside = real == m.point or real.startswith(m.point.rstrip("/") + "/")
        if inside and (best is None or len(m.point) >= len(best.point)):
            best = m
    return best


def node_local(m: Mount) -> str | None:
    """The mount option that keeps flock locks on this node only, or None."""
    if m.fstype in ("nfs", "nfs4"):
        for opt in ("nolock", "local_lock=flock", "local_lock=all"):
            if opt in m.options:
                return opt
    if m.fstype == "lustre" and "localflock" in m.options:
        return "localflock"
    return None


def where(path: Path) -> str:
    m = mount_of(path.parent)
    return f"the file system {m.describe()}" if m else f"the file system holding {path.parent}"


def _refuse_node_local(path: Path) -> None:
    m = mount_of(path.parent)
    opt = node_local(m) if m else None
    if opt:
        raise LockError(
            f"{path}: the file system {m.describe()} is mounted {opt}, so its locks are seen by this node "
            "only and a process on another node could hold the same lock; expected a file system whose "
            f"locks every node sees (mount it without {opt}, or put the output elsewhere), or {ENV}=none "
            "to run without locks (then never start one run, or one sweep's submission, twice at once)"
        )


def open_lock_file(path: Path, mode: int = 0o644) -> int:
    """The lock file's descriptor, created if missing (`mode`, less the umask): never through a
    symbolic link, and only a regular file (LockError otherwise)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW on a symbolic link
            raise LockError(
                f"{path} is a symbolic link, not a lock file; expected a regular file: remove the link (rm {path})"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockError(f"{path} is not a regular file; expected the lock file: remove it (rm {path})")
    return fd


def _flock(fd: int, path: Path, blocking: bool) -> bool:
    """flock(LOCK_EX); False only when another process holds it (EWOULDBLOCK/EAGAIN)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError as e:
        if e.errno in HELD and not blocking:
            return False
        if e.errno in UNSUPPORTED:
            raise LockError(
                f"cannot lock {path}: {where(path)} does not support file locks ({errno.errorcode[e.errno]}: "
                f"{os.strerror(e.errno)}); expected a file system with working flock (NFS with its lock service, "
                f"Lustre mounted flock), or {ENV}=none to run without locks (then never start one run, or one "
                "sweep's submission, twice at once)"
            ) from None
        raise


def is_locked_file(fd: int, path: Path) -> bool:
    """Whether the descriptor is still the file at `path` (not set aside, replaced or removed)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def acquire(path: Path, blocking: bool = False, on_wait: Callable[[], None] | None = None, mode: int = 0o644) -> int | None:
    """Lock `path` exclusively; returns its descriptor (the lock lasts until it is closed). None:
    held by another process (not `blocking`). `on_wait`: called once before blocking. `mode`: of a
    lock file created here (less the umask)."""
    path = Path(path)
    _refuse_node_local(path)
    for _ in range(RETRIES):
        fd = open_lock_file(path, mode)
        try:
            taken = _flock(fd, path, blocking=False)
            if not taken and blocking:
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                taken = _flock(fd, path, blocking=True)
        except BaseException:
            os.close(fd)
            raise
        if not taken:
            os.close(fd)
            return None
        if is_locked_file(fd, path):
            return fd
        os.close(fd)  # locked a file that was set aside or replaced meanwhile: lock the new one
    raise LockError(f"{path} was replaced {RETRIES} times while being locked; expected one process to own it: try again")


def probe(path: Path) -> bool:
    """Whether some process holds the lock of an existing `path` now (asked without keeping it)."""
    if not os.path.lexists(path):
        return False
    fd = open_lock_file(Path(path))
    try:
        if not _flock(fd, Path(path), blocking=False):
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """At most `limit` bytes of a regular file, never through a symbolic link; OSError otherwise
    (FileNotFoundError when absent). For the small files other processes leave beside a lock (who
    holds it, what a submission ran), which a FIFO or a link to /dev/zero in their place must not
    turn into a read that never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(fd, limit)
    finally:
        os.close(fd)
