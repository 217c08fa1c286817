"""Child processes for the demo, the benchmarks and the tests: start, wait, stop, reap.

``start()`` runs a command (by default in a process group of its own, its output in
a log file) and returns a ``Child``. ``Child.wait_until()`` / ``wait_port()`` /
``wait_line()`` wait until it is ready and raise ``NotReady`` with the tail of its
log when it exits first or takes too long. ``Child.stop()`` sends SIGTERM to its
group, SIGKILLs whatever is left after a timeout, and reaps it. ``Children`` keeps
what one program started and stops it all, newest first. ``reap()`` and
``read_line()`` do the same for a child made with ``os.fork()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "HOST",
    "Child",
    "Children",
    "NotReady",
    "accepts",
    "free_port",
    "processes",
    "read_line",
    "reap",
    "running",
    "start",
    "tail",
]

HOST = "127.0.0.1"
#: Seconds ``stop()`` waits after SIGTERM before it sends SIGKILL.
STOP_TIMEOUT = 15.0
#: Lines of each log that an error quotes.
TAIL_LINES = 30
PR_SET_PDEATHSIG = 1


class NotReady(RuntimeError):
    """A child exited, or took too long, before it was ready; the message ends with its log."""


def free_port(host: str = HOST) -> int:
    """A loopback TCP port that is free now (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(*paths: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of each file that has any, under its name."""
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            parts.append(f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts) or "(no output)"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """preexec_fn: SIGTERM this child when the process that started it dies, however."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One started process: ``proc`` is its ``Popen``, ``logs`` the files it writes.

    Its pipes, if any, are the caller's to close (``stop()`` reaps, it does not close).
    """

    def __init__(
        self, name: str, proc: subprocess.Popen[bytes], logs: Sequence[Path], own_group: bool
    ) -> None:
        self.name = name
        self.proc = proc
        self.logs = tuple(logs)
        self.own_group = own_group

    def __repr__(self) -> str:
        return f"<Child {self.name} pid {self.pid} status {self.proc.returncode}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def exited(self) -> bool:
        """Whether it has exited, without reaping it (so its group id stays its own)."""
        if self.proc.returncode is not None:
            return True
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except ChildProcessError:  # reaped behind Popen's back
            return True

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        return tail(*self.logs, lines=lines)

    def _not_ready(self, what: str) -> NotReady:
        status = f"exited with status {self.proc.wait()}" if self.exited() else "is still running"
        log = f" Its log:\n{self.log_tail()}" if self.logs else ""
        return NotReady(f"{self.name} (pid {self.pid}) {status}, {what}.{log}")

    def wait_until(
        self, ready: Callable[[], bool], timeout: float, what: str = "", interval: float = 0.05
    ) -> None:
        """Call ``ready()`` until it is true; NotReady if the child exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.exited():
                raise self._not_ready(f"before {what or 'it was ready'}")
            if time.monotonic() > deadline:
                raise self._not_ready(f"not {what or 'ready'} within {timeout:g} s")
            time.sleep(interval)

    def wait_port(self, port: int, timeout: float, host: str = HOST) -> None:
        """Wait until ``host:port`` accepts connections."""
        self.wait_until(lambda: accepts(port, host), timeout, f"accepting on {host}:{port}")

    def wait_line(self, timeout: float) -> bytes:
        """The first line it writes to its stdout pipe (``start(..., stdout=PIPE)``)."""
        assert self.proc.stdout is not None, "started without stdout=PIPE"
        try:
            return read_line(self.proc.stdout.fileno(), timeout)
        except NotReady as error:
            raise self._not_ready(str(error)) from None

    def send(self, signum: int) -> None:
        """Send ``signum`` to its group (or to it alone, outside a group of its own)."""
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT, signum: int | None = signal.SIGTERM) -> bool:
        """``signum``, wait up to ``timeout`` s, then SIGKILL; reaped. True if it was killed.

        ``signum`` None: it was asked to stop some other way (its stdin closed).
        In a group of its own, the whole group gets the signals: a stuck server,
        and workers a dying master left behind, stop too. The leader is reaped
        last: until then its group id cannot go to another process.
        """
        killed = False
        if not self.exited():
            if signum is not None:
                self.send(signum)
                self.send(signal.SIGCONT)  # a stopped (paused) process acts only then
            deadline = time.monotonic() + timeout
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.02)
            killed = not self.exited()
        if self.proc.returncode is None and (self.own_group or killed):
            self.send(signal.SIGKILL)
        self.proc.wait()
        return killed

    def kill(self) -> None:
        """SIGKILL (its group) and reap: as if it crashed."""
        if self.proc.returncode is None:
            self.send(signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(
    cmd: Sequence[str],
    *,
    name: str | None = None,
    log: Path | None = None,
    append: bool = False,
    also_logs: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    own_group: bool = True,
    die_with_parent: bool = False,
) -> Child:
    """Start ``cmd``: by default in a process group of its own, with no stdin.

    With ``log``, what it writes goes to that file (stdout and stderr, or
    stderr alone when ``stdout`` is given); ``also_logs`` are files it writes
    itself, quoted with ``log`` when it fails. ``die_with_parent``: it gets
    SIGTERM when this process dies, even by SIGKILL (Linux).
    """
    logs = [*([log] if log is not None else []), *also_logs]
    with contextlib.ExitStack() as stack:
        out, err = stdout, stderr
        if log is not None:
            file = stack.enter_context(log.open("ab" if append else "wb"))
            if stdout is None:
                out, err = file, subprocess.STDOUT
            elif stderr is None:
                err = file
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=err,
            start_new_session=own_group,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    return Child(name or Path(cmd[0]).name, proc, logs, own_group)


class Children:
    """What one program started, stopped newest first by ``stop_all()``. Thread-safe."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._lock = threading.Lock()

    def start(self, cmd: Sequence[str], **kwargs: Any) -> Child:
        """``start(cmd, **kwargs)``, registered to be stopped."""
        child = start(cmd, **kwargs)
        self.add(child)
        return child

    def add(self, child: Child) -> None:
        with self._lock:
            self._children.append(child)

    def stop(self, child: Child, timeout: float = STOP_TIMEOUT) -> bool:
        with self._lock:
            self._children = [c for c in self._children if c is not child]
        return child.stop(timeout)

    def stop_all(
        self, timeout: float = STOP_TIMEOUT, report: Callable[[Child, bool], None] | None = None
    ) -> None:
        """Stop every child, newest first; ``report(child, killed)`` after each."""
        while True:
            with self._lock:
                if not self._children:
                    return
                child = self._children[-1]
            killed = self.stop(child, timeout)
            if report is not None:
                report(child, killed)


def read_line(fd: int, timeout: float) -> bytes:
    """Read from ``fd`` up to a newline; NotReady on end of file or after ``timeout`` s."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReady(f"no line within {timeout:g} s (read so far: {data!r})")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise NotReady(f"end of output before a whole line (read so far: {data!r})")
            data += chunk
    return data


def reap(pid: int, timeout: float) -> int:
    """Wait for child ``pid`` to exit (SIGKILL after ``timeout`` s); its exit code."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -signal.SIGKILL
        time.sleep(0.01)


def running(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie has exited and only waits to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc here
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """The running processes with this parent, or in this session (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent or int(fields[3]) == session:
                found.append(int(stat.parent.name))
    return [pid for pid in found if running(pid)]
