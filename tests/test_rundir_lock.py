"""One run directory, one writer: a second process on a held run directory writes nothing and
exits 75; a SIGKILLed holder leaves no lock behind. Also the resume decision and progress polling."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from al_core.rundir import RunDirLock, RunLocked, holder
from tests._forked import Run, run as forked_run
from tests.test_resume import wait_stopped

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "smoke.yaml"
RUN_ID = "resnet18-sgd-random-t0"


def start(out: Path, pause: str | None = None) -> Run:
    """The run in a child; with `pause` (AL_PAUSE_AT) it stops itself at that write, lock held, so
    it is still the holder however fast the machine trains."""
    env = {**os.environ, "AL_THREADS": "1"}
    env.pop("AL_PAUSE_AT", None)
    if pause:
        env["AL_PAUSE_AT"] = pause
    return Run([SMOKE, f"output={out}", "train.epochs=400", "--run", RUN_ID], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_holder(run_dir: Path, pid: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = holder(run_dir)
        if h.get("pid") == pid and (run_dir / "run.json").exists():
            return h
        time.sleep(0.2)
    raise AssertionError(f"process {pid} never took the lock of {run_dir}")


def snapshot(run_dir: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".lock"}


def test_a_second_process_cannot_take_a_held_lock_and_a_released_one_is_free(tmp_path):
    a = RunDirLock(tmp_path).acquire()
    try:
        assert holder(tmp_path)["pid"] == os.getpid()
        pid = os.fork()  # another process opens the file anew and asks for the lock
        if pid == 0:
            try:
                RunDirLock(tmp_path).acquire()
                os._exit(0)
            except RunLocked as e:
                os._exit(75 if f"pid {os.getppid()}" in str(e) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 75
    finally:
        a.release()
    RunDirLock(tmp_path).acquire().release()


def test_second_process_exits_75_and_writes_nothing_then_a_killed_holder_frees_the_directory(tmp_path):
    out = tmp_path / "results"
    run_dir = out / "smoke" / "runs" / RUN_ID
    first = start(out, pause="checkpoint:1")
    try:
        assert wait_stopped(first), "the first run ended before its first checkpoint"
        h = wait_for_holder(run_dir, first.pid)
        assert h["host"] and h["since"]
        before = snapshot(run_dir)
        run_json = (run_dir / "run.json").read_text()
        second = forked_run([SMOKE, f"output={out}", "train.epochs=400", "--run", RUN_ID], timeout=120)
        assert second.returncode == 75, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"pid {first.pid}" in lines[0], lines
        after = snapshot(run_dir)
        assert (run_dir / "run.json").read_text() == run_json, "the refused process must not record a start"
        assert {n: t for n, t in after.items() if not n.startswith(("ckpt-", "cycles", ".ckpt"))} == {
            n: t for n, t in before.items() if not n.startswith(("ckpt-", "cycles", ".ckpt"))
        }
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = start(out)
        try:
            wait_for_holder(run_dir, third.pid)
        finally:
            third.send_signal(signal.SIGKILL)
            third.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# ----------------------------------------------------------------------------------------------
# The run directory's other rules: the resume decision and cheap progress polling.
@pytest.mark.parametrize(
    "rows, reset, ckpt, start, restore, ignored",
    [
        (2, True, 5, 2, False, True),  # a checkpoint ahead of the rows is not trusted: re-train cycle 2
        (4, True, 2, 4, False, False),  # with reset only the last finished cycle's model matters
        (2, True, 3, 3, True, False),  # continue cycle 3 where it stopped
        (2, False, 1, 1, True, False),  # no reset: weights carry over, any earlier cycle is a start
        (10, True, None, 11, False, False),  # every row there: only DONE is missing
        (3, True, None, 3, False, False),  # re-train cycle 3 to query cycle 4
        (0, True, None, 1, False, False),
        (3, False, None, 1, False, False),  # weights carry over: replay from cycle 1
    ],
)
def test_resume_point_follows_its_table(rows, reset, ckpt, start, restore, ignored):
    from al_core.checkpoint import resume_point

    r = resume_point(rows, 10, reset, ckpt)
    assert (r.start, r.restore, r.ignored is not None) == (start, restore, ignored)


def test_progress_counts_rows_and_follows_rewrites(tmp_path):
    import json

    from al_core.rundir import RunDir

    d = RunDir(tmp_path)
    assert d.progress() == (0, None, 0)
    rows = [{"run_id": "r", "cycle": i, "test_accuracy": 0.1 * i} for i in (1, 2)]
    d.rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d.run_json.write_text(json.dumps({"restarts": 2}))
    assert d.progress() == (2, 0.2, 2)
    rows.append({"run_id": "r", "cycle": 3, "test_accuracy": 0.5})
    d.rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    st = d.rows_path.stat()
    os.utime(d.rows_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rewrite within the clock's resolution
    assert d.progress() == (3, 0.5, 2)
