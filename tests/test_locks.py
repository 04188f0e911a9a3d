"""Locks that hold or refuse (al_core.locks): the run directory's lock and the sweep's submission
lock open only a regular file (never through a link), lock the file that is at the path when they
hold it, read only EWOULDBLOCK/EAGAIN as "held", and refuse in one line a file system without
locks or whose locks other nodes do not see; AL_LOCK=none takes none."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from al_core import locks
from al_core.locks import LockError
from al_core.rundir import LOCK_NAME, RunDirLock, RunLocked
from al_core.run import main as run_main
from slurm import ledger
from slurm.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "smoke.yaml"
RUN_ID = "resnet18-sgd-random-t0"


@pytest.fixture(autouse=True)
def default_mode(monkeypatch):
    monkeypatch.delenv(locks.ENV, raising=False)


def flock_failing(monkeypatch, code: int):
    """fcntl.flock as a file system answers that has no locks (ENOLCK, ...) or a held lock (EAGAIN)."""

    def flock(fd, op):
        if op & fcntl.LOCK_EX:
            raise OSError(code, os.strerror(code))
        return fcntl.flock(fd, op)

    monkeypatch.setattr(locks.fcntl, "flock", flock)


# ----------------------------------------------------------------------------------------------
# only EWOULDBLOCK/EAGAIN means "held"
@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_file_system_without_locks_is_named_in_one_error_line(tmp_path, monkeypatch, capsys, code):
    flock_failing(monkeypatch, code)
    with pytest.raises(LockError) as e:
        RunDirLock(tmp_path).acquire()
    mount = locks.mount_of(tmp_path)
    assert errno.errorcode[code] in str(e.value) and "does not support file locks" in str(e.value)
    assert f"the file system {mount.point} ({mount.fstype}" in str(e.value) and "AL_LOCK=none" in str(e.value)
    # A run: exit 78 (this node cannot serve it), one line, not "in use by another process" (75).
    with pytest.raises(SystemExit) as run_exit:
        run_main([str(SMOKE), f"output={tmp_path / 'out'}", "--run", RUN_ID])
    err = capsys.readouterr().err.strip().splitlines()
    assert run_exit.value.code == 78 and len(err) == 1 and err[0].startswith("error: cannot lock ") and "in use" not in err[0]
    # The sweep's submission lock: the same line, nothing submitted, no raw OSError.
    with pytest.raises(SystemExit) as sweep_exit:
        sweep_main([str(SMOKE), f"output={tmp_path / 'out'}", "--cluster", "local"])
    err = capsys.readouterr().err.strip().splitlines()
    assert sweep_exit.value.code == 78 and len(err) == 1 and err[0].startswith("error: cannot lock ")
    assert ".jobs.lock" in err[0] and not (tmp_path / "out" / "smoke" / "jobs.json").exists()


def test_ewouldblock_still_means_in_use(tmp_path, monkeypatch):
    flock_failing(monkeypatch, errno.EWOULDBLOCK)
    with pytest.raises(RunLocked, match="is in use by"):
        RunDirLock(tmp_path).acquire()


# ----------------------------------------------------------------------------------------------
# a regular file only, never followed through a link
def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    run_dir.mkdir()
    sweep_dir.mkdir()
    (run_dir / LOCK_NAME).symlink_to(victim)
    (sweep_dir / ledger.LOCK_FILE).symlink_to(tmp_path / "absent")  # a dangling link is not created either
    with pytest.raises(LockError, match="is a symbolic link"):
        RunDirLock(run_dir).acquire()
    with pytest.raises(LockError, match="is a symbolic link"):
        with ledger.locked(sweep_dir, wait_note=False):
            pytest.fail("locked through a link")
    assert victim.read_text() == "precious\n" and not (tmp_path / "absent").exists()


def test_a_fifo_in_place_of_the_lock_is_refused(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(LockError, match="not a regular file"):
        RunDirLock(tmp_path).acquire()


def test_a_lock_file_replaced_while_being_locked_is_let_go_and_the_new_one_locked(tmp_path, monkeypatch):
    """A takeover sets the old file aside between this process's open and its flock: the lock it
    got is on the old file, which no one else will look at; it must lock the file now at the path."""
    path = tmp_path / LOCK_NAME
    real_flock, swapped = fcntl.flock, []

    def flock(fd, op):
        if not swapped:
            swapped.append(os.fstat(fd).st_ino)
            os.replace(path, tmp_path / f"{LOCK_NAME}.stale-1")  # set aside under our feet
            path.write_text("")
        return real_flock(fd, op)

    monkeypatch.setattr(locks.fcntl, "flock", flock)
    lock = RunDirLock(tmp_path).acquire()
    try:
        assert swapped and os.fstat(lock.fd).st_ino == path.stat().st_ino != swapped[0]
    finally:
        lock.release()


# ----------------------------------------------------------------------------------------------
# locks other nodes do not see (NFS local_lock / nolock, Lustre localflock): refused
def fake_mounts(monkeypatch, tmp_path, point: Path, fstype: str, options: str):
    text = (
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"36 22 0:40 / {str(point).replace(' ', chr(92) + '040')} rw,relatime shared:2 - {fstype} server:/export {options}\n"
    )
    (tmp_path / "mountinfo").write_text(text)
    monkeypatch.setattr(locks, "MOUNTINFO", tmp_path / "mountinfo")


@pytest.mark.parametrize(
    "fstype, options, refused",
    [
        ("nfs4", "rw,vers=4.2,local_lock=flock,addr=10.0.0.1", "local_lock=flock"),
        ("nfs", "rw,vers=3,local_lock=all,addr=10.0.0.1", "local_lock=all"),
        ("nfs", "rw,vers=3,nolock,addr=10.0.0.1", "nolock"),
        ("lustre", "rw,localflock", "localflock"),
        ("nfs4", "rw,vers=4.2,local_lock=none,addr=10.0.0.1", None),
        ("lustre", "rw,flock", None),
    ],
)
def test_locks_that_other_nodes_do_not_see_are_refused(tmp_path, monkeypatch, fstype, options, refused):
    shared = tmp_path / "shared dir"  # a space: mountinfo's \040
    run_dir = shared / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    fake_mounts(monkeypatch, tmp_path, shared, fstype, options)
    assert locks.mount_of(run_dir).point == str(shared.resolve())
    if refused is None:
        RunDirLock(run_dir).acquire().release()
        return
    for attempt in (lambda: RunDirLock(run_dir).acquire(), lambda: ledger.locked(shared).__enter__()):
        with pytest.raises(LockError) as e:
            attempt()
        assert f"{shared.resolve()} ({fstype} from server:/export) is mounted {refused}" in str(e.value)
        assert "another node could hold the same lock" in str(e.value) and "AL_LOCK=none" in str(e.value)
    # AL_LOCK=none: the user's decision to run without locks there
    monkeypatch.setenv(locks.ENV, "none")
    RunDirLock(run_dir).acquire().release()
    with ledger.locked(shared, wait_note=False):
        pass
    assert not (run_dir / LOCK_NAME).exists() and not (shared / ledger.LOCK_FILE).exists()


def test_a_bad_lock_mode_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.ENV, "posix")
    with pytest.raises(LockError, match=r"AL_LOCK='posix': expected one of flock, none"):
        RunDirLock(tmp_path).acquire()


def test_mountinfo_without_proc_is_no_refusal(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "MOUNTINFO", tmp_path / "absent")
    assert locks.mount_of(tmp_path) is None
    RunDirLock(tmp_path).acquire().release()


def test_who_holds_a_lock_is_read_without_following_a_link_or_waiting_on_a_fifo(tmp_path):
    from al_core.rundir import holder

    (tmp_path / LOCK_NAME).symlink_to("/dev/zero")  # read to its end, it never ends
    assert holder(tmp_path) == {}
    (tmp_path / LOCK_NAME).unlink()
    os.mkfifo(tmp_path / LOCK_NAME)  # read, it waits for a writer
    assert holder(tmp_path) == {}
    folder = tmp_path / "logs" / "20261201-000000-1"
    folder.mkdir(parents=True)
    os.mkfifo(folder / ledger.SUBMITTED_FILE)
    assert ledger.submitted_jobs(tmp_path) == ({}, [folder / ledger.SUBMITTED_FILE])


def test_a_fifo_in_place_of_jobs_json_is_unreadable_not_a_hang(tmp_path):
    os.mkfifo(ledger.jobs_path(tmp_path))
    assert ledger._load(tmp_path)[1].startswith("unreadable")
