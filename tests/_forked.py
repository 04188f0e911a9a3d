"""`python -m al_core.run ...` as a child process forked from an interpreter that imported it already.

A fresh interpreter spends about 5.5 s of a 2-core CPU importing torch, torch._dynamo (every
optimizer's constructor imports it) and scikit-learn, before a smoke run trains for a second; the
kill-and-resume tests start dozens of runs. So each test process starts one zygote: it imports what
a run imports, never computes, and forks a child per run. The child is a process of its own (its
pid, environment, working directory, stdout and stderr pipes); signals stop (AL_PAUSE_AT), kill or
terminate it as they would a fresh `python -m al_core.run`, and its exit status reads the same
(negative: the signal that ended it).

What differs from a fresh interpreter: modules were imported before the child's environment was
set (al_core reads its environment when called, not when imported). The command-line paths that
must hold in a fresh interpreter (error lines, exit codes, what is imported) keep subprocesses:
tests/test_preflight.py, tests/test_config.py.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_MAX = 1 << 16


def _serve(fd: int) -> None:
    """The zygote: fork a run per request; report each child's exit status when it ends."""
    import al_core.run  # noqa: F401  (and with it torch, the loop, the trainer)
    import sklearn.metrics  # noqa: F401  (evaluation)
    import torch._dynamo  # noqa: F401  (torch.optim.Optimizer.__init__)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the test run ends the zygote by EOF
    sock = socket.socket(fileno=fd)
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([sock], [], [], 0.01 if children else None)
        if ready:
            data, fds, _, _ = socket.recv_fds(sock, _MAX, 3)
            if not data:
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                return
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(request, fds)
            for f in fds:
                os.close(f)
            children.add(pid)
            sock.send(json.dumps({"started": pid}).encode())
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                sock.send(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _child(request: dict, fds: list[int]) -> None:
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        for target, fd in zip((0, 1, 2), (devnull, *fds)):
            os.dup2(fd, target)
        for fd in (devnull, *fds):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["al_core/run.py", *request["args"]]
        from al_core.run import main

        code = main(request["args"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


class _Pipe:
    """The read end of a child's stdout or stderr: readline() as the tests use it, and what is left."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf, self.eof = fd, b"", False

    def fileno(self) -> int:
        return self.fd

    def more(self) -> bool:
        chunk = os.read(self.fd, _MAX)
        self.buf += chunk
        self.eof = not chunk
        return bool(chunk)

    def readline(self) -> str:
        while b"\n" not in self.buf and self.more():
            pass
        line, sep, self.buf = self.buf.partition(b"\n")
        return (line + sep).decode(errors="replace")

    def close(self) -> None:
        os.close(self.fd)


class _Zygote:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import tests._forked as f; f._serve({theirs.fileno()})"
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", code], pass_fds=[theirs.fileno()], cwd=ROOT)
        theirs.close()
        self.sock = ours
        self.exits: dict[int, int] = {}

    def pump(self, timeout: float | None) -> dict | None:
        """Read one message (waiting up to `timeout`); exit reports are kept in self.exits."""
        if not select.select([self.sock], [], [], timeout)[0]:
            return None
        data = self.sock.recv(_MAX)
        if not data:
            raise RuntimeError("the test zygote ended")
        message = json.loads(data)
        if "exited" in message:
            self.exits[message["exited"]] = message["code"]
        return message

    def start(self, args: list[str], env: dict, cwd: Path, fds: list[int]) -> int:
        request = json.dumps({"args": [str(a) for a in args], "env": env, "cwd": str(cwd)}).encode()
        socket.send_fds(self.sock, [request], fds)
        while True:
            message = self.pump(60)
            if message is None:
                raise RuntimeError("the test zygote did not start a run within 60 s")
            if "started" in message:
                return message["started"]


_zygote: _Zygote | None = None


def _the_zygote() -> _Zygote:
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = _Zygote()
    return _zygote


class Run:
    """A forked run with the part of subprocess.Popen's interface the tests use (text mode)."""

    def __init__(self, args, env=None, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) -> None:
        self.args = ["python", "-m", "al_core.run", *map(str, args)]
        self.returncode: int | None = None
        self._z = _the_zygote()
        ends, send, self.stdout, self.stderr = [], [], None, None
        for kind in (stdout, stderr):
            if kind == subprocess.PIPE:
                r, w = os.pipe()
                ends.append(_Pipe(r))
                send.append(w)
            elif kind == subprocess.STDOUT:
                send.append(os.dup(send[0]))
                ends.append(None)
            else:
                send.append(os.open(os.devnull, os.O_WRONLY))
                ends.append(None)
        self.stdout, self.stderr = ends
        try:
            self.pid = self._z.start(args, dict(os.environ if env is None else env), cwd, send)
        finally:
            for fd in send:
                os.close(fd)

    def poll(self) -> int | None:
        while self.returncode is None and self._z.pump(0) is not None:
            pass
        if self.returncode is None and self.pid in self._z.exits:
            self.returncode = self._z.exits.pop(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._z.pump(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Read stdout and stderr to their ends, then wait (both within `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = [s for s in (self.stdout, self.stderr) if s is not None]
        while open_ := [s for s in streams if not s.eof]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            for s in select.select(open_, [], [], left)[0]:
                s.more()
        out = [None if s is None else s.buf.decode(errors="replace") for s in (self.stdout, self.stderr)]
        for s in streams:
            s.close()
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return out[0], out[1]


def run(args, env=None, cwd=ROOT, timeout=None) -> subprocess.CompletedProcess:
    """subprocess.run(capture_output=True, text=True) of a forked run."""
    p = Run(args, env, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)
