"""Runs that survive anything: SIGKILL and SIGTERM at many moments, damaged checkpoints, full disks.

Every interrupted run, restarted until DONE, must write the rows of the uninterrupted run
(timing, memory, energy and device fields aside).
"""

import itertools
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from al_core import checkpoint
from al_core.config import load_sweep
from al_core.io import read_jsonl
from al_core.loop import run
from al_core.train import Interrupted, StopFlag
from al_core.results import EXIT_INTERRUPTED, comparable
from al_core.run import main as run_main
from tests._forked import Run

RUN_ID = "resnet18-sgd-learning_loss-t0"
LONGER = ["train.epochs=8"]  # 24 epochs in all, a checkpoint after each: many distinct moments to kill at


def rows_of(run_dir):
    return [comparable(r) for r in read_jsonl(run_dir / "cycles.jsonl")]


def reference_rows(smoke_yaml, overrides=(), threads=None):
    """The uninterrupted run, in this process (at the subprocesses' thread count when given).

    CPU kernels are bit-reproducible at a fixed number of threads only (documented in README).
    """
    import torch

    sweep = load_sweep(smoke_yaml, list(overrides))
    spec = sweep.run(RUN_ID)
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        run(spec, sweep.run_dir(RUN_ID), log=lambda s: None)
    finally:
        torch.set_num_threads(default)
    return rows_of(sweep.run_dir(RUN_ID))


@pytest.fixture
def reference(smoke_yaml):
    return reference_rows(smoke_yaml)


def start(smoke_yaml, out, pause=None, overrides=()):
    """`python -m al_core.run` of RUN_ID in a child (forked: tests/_forked.py), stdout and stderr on one pipe."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", AL_THREADS="1")
    env.pop("AL_PAUSE_AT", None)
    if pause:
        env["AL_PAUSE_AT"] = pause
    return Run([smoke_yaml, f"output={out}", *overrides, "--run", RUN_ID], env)


def wait_stopped(p, timeout=60):
    """Wait until the child stopped itself at its pause point (True) or exited (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            return False
        try:
            state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = ""
        if state == "T":
            return True
        time.sleep(0.01)
    raise TimeoutError("child neither paused nor exited")


def consistent(run_dir):
    """What a reader sees after a kill is whole: rows parse, every checkpoint verifies or is absent."""
    rows = read_jsonl(run_dir / "cycles.jsonl")  # raises on a half-written line
    assert [r["cycle"] for r in rows] == list(range(1, len(rows) + 1))
    if (run_dir / "run.json").exists():
        json.loads((run_dir / "run.json").read_text())


def test_sigkill_at_many_moments_gives_the_same_rows(smoke_yaml, tmp_path):
    t0 = time.monotonic()
    reference = reference_rows(smoke_yaml, LONGER, threads=1)
    run_s = time.monotonic() - t0  # the machine's pace: timed kills fall inside a run, however fast it trains
    out = tmp_path / "killed"
    run_dir = out / "smoke" / "runs" / RUN_ID
    # Moments inside writes (the process stops itself right before the rename of the n-th write
    # of that kind it makes) alternate with random moments in time (None).
    rng = random.Random(7)
    # Each process is stopped early (the n-th write of its own), so the run advances a little per kill.
    plan = itertools.chain(
        itertools.islice(itertools.cycle(["checkpoint:2", "rows:1", None, "checkpoint:1", "run_json:1", "checkpoint:3"]), 40),
        ["done:1"],  # last: the process runs to the end, killed while writing DONE
    )
    moments = set()
    for pause in plan:
        if (run_dir / "DONE").exists():
            break
        if len(moments) >= 8 and pause != "done:1":
            continue
        p = start(smoke_yaml, out, pause, LONGER)
        if pause:
            if not wait_stopped(p):
                continue  # finished before reaching that point
        else:
            p.stdout.readline()  # the run's first line: it has started; kill within its first half
            try:
                p.wait(timeout=rng.uniform(0.0, 0.5) * run_s)
                continue
            except subprocess.TimeoutExpired:
                pass
        p.kill()
        p.wait()
        consistent(run_dir)
        newest = checkpoint.list_checkpoints(run_dir)
        moments.add((pause, len(read_jsonl(run_dir / "cycles.jsonl")), newest[0].name if newest else None))
    while not (run_dir / "DONE").exists():
        p = start(smoke_yaml, out, overrides=LONGER)
        out_text = p.communicate(timeout=120)[0]
        assert p.returncode == 0, out_text
    assert len(moments) >= 6, moments
    assert rows_of(run_dir) == reference
    assert len(checkpoint.list_checkpoints(run_dir)) <= checkpoint.KEEP
    assert not list(run_dir.glob(".*.tmp"))


def test_sigterm_at_random_moments_is_graceful_and_gives_the_same_rows(smoke_yaml, tmp_path):
    t0 = time.monotonic()
    reference = reference_rows(smoke_yaml, LONGER, threads=1)
    run_s = time.monotonic() - t0  # the machine's pace: each SIGTERM lands inside a run
    out = tmp_path / "termed"
    run_dir = out / "smoke" / "runs" / RUN_ID
    rng = random.Random(11)
    graceful = 0
    for _ in range(8):
        if (run_dir / "DONE").exists() or graceful >= 3:
            break
        p = start(smoke_yaml, out, overrides=LONGER)
        p.stdout.readline()  # the run's first line: its signal handlers are in place, training begins
        time.sleep(rng.uniform(0.0, 0.4) * run_s)
        p.send_signal(signal.SIGTERM)
        text = p.communicate(timeout=120)[0]
        assert p.returncode in (0, EXIT_INTERRUPTED, -signal.SIGTERM), text
        if p.returncode == EXIT_INTERRUPTED:
            graceful += 1
            assert "interrupted by SIGTERM" in text and "run the same command again" in text
            newest = checkpoint.list_checkpoints(run_dir)[0]
            checkpoint.read(newest, load_sweep(smoke_yaml, [f"output={out}", *LONGER]).run(RUN_ID).config.fingerprint())
        consistent(run_dir)
    while not (run_dir / "DONE").exists():
        p = start(smoke_yaml, out, overrides=LONGER)
        assert p.wait(timeout=120) == 0
    assert graceful >= 2
    assert rows_of(run_dir) == reference


def interrupted_run(smoke_yaml, tmp_path, at_check=30):
    """A run stopped inside cycle 2 (checkpoints exist), plus its spec and directory."""
    sweep = load_sweep(smoke_yaml, [f"output={tmp_path}"])
    spec = sweep.run(RUN_ID)
    run_dir = sweep.run_dir(RUN_ID)
    calls = {"n": 0}

    class StopAt(StopFlag):
        @property
        def signame(self):
            calls["n"] += 1
            return "SIGTERM" if calls["n"] == at_check else None

        @signame.setter
        def signame(self, value):
            pass

    with pytest.raises(Interrupted):
        run(spec, run_dir, stop=StopAt(), log=lambda s: None)
    return spec, run_dir


def damage_truncate(p):
    p.write_bytes(p.read_bytes()[:-100])


def damage_flip(p):
    b = bytearray(p.read_bytes())
    b[-50] ^= 0xFF
    p.write_bytes(bytes(b))


def damage_empty(p):
    p.write_bytes(b"")


def damage_other_format(p):
    import torch

    torch.save({"model": {}}, p)  # a plain torch file, no header


def damage_garbage(p):
    p.write_bytes(os.urandom(4096))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip, damage_empty, damage_other_format, damage_garbage])
def test_damaged_newest_checkpoint_falls_back(smoke_yaml, reference, tmp_path, caplog, damage):
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path)
    newest = checkpoint.list_checkpoints(run_dir)[0]
    damage(newest)
    run(spec, run_dir, log=lambda s: None)
    # One warning through logging (a command prints it to stderr: al_core.cli.setup_logging).
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "al_core.checkpoint" and r.getMessage().startswith("warning: checkpoint")
    ]
    assert len(warnings) == 1 and newest.name in warnings[0]
    assert rows_of(run_dir) == reference


def test_foreign_checkpoint_of_another_config_is_refused(smoke_yaml, reference, tmp_path, caplog):
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path / "a")
    _, other_dir = interrupted_run(smoke_yaml, tmp_path / "b")
    # A checkpoint of another config (another trial's fingerprint), planted as the newest.
    other_spec = load_sweep(smoke_yaml, ["grid.trial=[3]"]).run(RUN_ID.replace("t0", "t3"))
    pos, state = checkpoint.read(checkpoint.list_checkpoints(other_dir)[0], spec.config.fingerprint())
    checkpoint.save(other_dir, checkpoint.Position(9, 0, 0), other_spec.config.fingerprint(), state)
    planted = checkpoint.list_checkpoints(other_dir)[0]
    (run_dir / planted.name).write_bytes(planted.read_bytes())
    run(spec, run_dir, log=lambda s: None)
    assert any("belongs to another config" in r.getMessage() for r in caplog.records)
    assert rows_of(run_dir) == reference


def test_every_checkpoint_lost_still_gives_the_same_rows(smoke_yaml, reference, tmp_path):
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path, at_check=45)
    for p in checkpoint.list_checkpoints(run_dir):
        p.unlink()
    run(spec, run_dir, log=lambda s: None)  # re-derives the last finished cycle's model by training again
    assert rows_of(run_dir) == reference


def test_config_mismatch_refused_with_keys_named(smoke_yaml, tmp_path, capsys):
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(SystemExit) as e:
        run_main([str(smoke_yaml), f"output={tmp_path}", "train.batch_size=16", "--run", RUN_ID])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train.batch_size" in err and "--restart" in err and "\n" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_done_run_started_again_does_nothing(smoke_yaml, reference, tmp_path, capsys):
    args = [str(smoke_yaml), f"output={tmp_path}", "--run", RUN_ID]
    assert run_main(args) == 0
    run_dir = tmp_path / "smoke" / "runs" / RUN_ID
    stamp = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    capsys.readouterr()
    assert run_main(args) == 0
    assert "already done" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == stamp


def test_disk_full_while_writing_keeps_previous_state(smoke_yaml, tmp_path, capsys, monkeypatch):
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path)
    rows_before = (run_dir / "cycles.jsonl").read_bytes()
    ckpts_before = {p.name: p.read_bytes() for p in checkpoint.list_checkpoints(run_dir)}
    import al_core.io as io_mod

    real_fsync = io_mod.os.fsync

    def full(fd):
        if os.fstat(fd).st_size > 0 and not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(io_mod.os, "fsync", full)
    with pytest.raises(SystemExit) as e:
        run_main([str(smoke_yaml), f"output={tmp_path}", "--run", RUN_ID])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no space left on device" in err[0]
    assert str(run_dir) in err[0] and "the write needs" in err[0] and "bytes free there" in err[0]
    assert (run_dir / "cycles.jsonl").read_bytes() == rows_before
    assert {p.name: p.read_bytes() for p in checkpoint.list_checkpoints(run_dir)} == ckpts_before
    assert not list(run_dir.glob(".*.tmp"))
