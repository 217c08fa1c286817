"""Real ``redis-server`` processes (and a silent TCP listener) for the test suite.

Everything here owns OS resources (child processes, sockets, threads), so every
object must be stopped/closed: the suite runs with ``-W error`` and
``PYTHONDEVMODE=1``, where a leaked socket or an unreaped child is a failure.
The helper clients used internally always have short socket timeouts and no
retries, so nothing in the harness can hang on a paused or dead server.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from testproject.supervisor import HOST, Child, NotReady, free_port, start

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self  # typing.Self is 3.11+

__all__ = ["HOST", "RedisServer", "SilentListener", "free_port"]

#: Socket timeout (seconds) of the harness's own helper clients.
HELPER_SOCKET_TIMEOUT = 2.0
#: How long ``start()`` / ``restart()`` wait for the server to answer PING.
STARTUP_TIMEOUT = 10.0
#: Socket timeout of each readiness probe (short, so a dead child is noticed fast
#: even if something else that never answers holds the port).
PROBE_SOCKET_TIMEOUT = 0.25
#: How long ``stop()`` waits after SIGTERM before sending SIGKILL.
STOP_TIMEOUT = 5.0
#: How many fresh ports ``start()`` tries when the chosen one is taken in a race.
PORT_ATTEMPTS = 5

_ADDR_IN_USE_MARKERS = ("Address already in use", "EADDRINUSE")


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


class RedisServer:
    """One real ``redis-server`` child process on a free loopback port.

    Use as a context manager (``with RedisServer(tmp) as server: ...``) or call
    ``start()`` / ``stop()`` explicitly.  ``port`` stays the same across
    ``kill()`` / ``restart()``.
    """

    host: str = HOST
    #: Whether the server gets SIGTERM when this process dies (the benchmarks' runner).
    die_with_parent: bool = False

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = pathlib.Path(workdir)
        self.password = password
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self._port: int | None = None
        self._child: Child | None = None
        self._paused = False

    # ------------------------------------------------------------------ info

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self._port} {state}>"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RedisServer has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The current (or last) ``redis-server`` child process."""
        if self._child is None:
            raise RuntimeError("RedisServer has not been started yet")
        return self._child.proc

    @property
    def running(self) -> bool:
        """True while the child process exists (even if paused)."""
        return self._child is not None and self._child.proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def log_path(self) -> pathlib.Path:
        return self._log_path(self.port)

    def _log_path(self, port: int) -> pathlib.Path:
        return self.workdir / f"redis-{port}.log"

    def _out_path(self, port: int) -> pathlib.Path:
        return self.workdir / f"redis-{port}.out"

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Spawn the server on a fresh free port and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server binary not found on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            ok, last_error = self._spawn_and_wait(port)
            if ok:
                self._port = port
                return self
            if not any(marker in last_error for marker in _ADDR_IN_USE_MARKERS):
                break
        raise RuntimeError(f"redis-server failed to start: {last_error}")

    def restart(self) -> Self:
        """Start again on the SAME port (stopping first if still running)."""
        port = self.port
        self.stop()
        ok, error = self._spawn_and_wait(port)
        if not ok:
            raise RuntimeError(f"redis-server failed to restart on port {port}: {error}")
        return self

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL after ``STOP_TIMEOUT`` s.  Idempotent."""
        if self._child is not None:
            self._child.stop(STOP_TIMEOUT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL and reap: simulates a crashed server.  Idempotent."""
        if self._child is not None:
            self._child.kill()
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts TCP connections, nothing replies."""
        self._signal_running(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._signal_running(signal.SIGCONT)
        self._paused = False

    def _signal_running(self, sig: signal.Signals) -> None:
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        self.proc.send_signal(sig)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, port: int) -> list[str]:
        cmd = [
            "redis-server",
            "--port", str(port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self._log_path(port)),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        cmd += self.extra_args
        return cmd

    def _spawn_and_wait(self, port: int) -> tuple[bool, str]:
        """Spawn on ``port``; return (ready, error text).  Never leaks the child."""
        child = start(
            self._command(port),
            name="redis-server",
            # Early errors (bad arguments) go to stdout before the logfile is open.
            log=self._out_path(port),
            append=True,
            also_logs=[self._log_path(port)],
            cwd=self.workdir,
            own_group=False,
            die_with_parent=self.die_with_parent,
        )
        self._child = child
        self._paused = False
        try:
            with self._helper(port, 0, timeout=PROBE_SOCKET_TIMEOUT) as client:
                # Our process must answer, not whoever grabbed the port in a race.
                child.wait_until(
                    lambda: self._answers(client, child.pid), STARTUP_TIMEOUT, "answering PING"
                )
        except NotReady as error:
            self.kill()
            return False, str(error)
        except BaseException:
            self.kill()
            raise
        return True, ""

    @staticmethod
    def _answers(client: redis.Redis, pid: int) -> bool:
        """Whether process ``pid`` answers PING through ``client``."""
        try:
            return bool(client.ping()) and int(client.info("server")["process_id"]) == pid
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    # --------------------------------------------------------------- clients

    @staticmethod
    def _client_kwargs(timeout: float, overrides: Mapping[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": _no_retry(),
        }
        kwargs.update(overrides)
        return kwargs

    @contextlib.contextmanager
    def _helper(
        self, port: int, db: int, *, timeout: float = HELPER_SOCKET_TIMEOUT
    ) -> Iterator[redis.Redis]:
        client = redis.Redis(
            host=self.host,
            port=port,
            db=db,
            password=self.password,
            **self._client_kwargs(timeout, {}),
        )
        try:
            yield client
        finally:
            client.close()
            client.connection_pool.disconnect()

    @contextlib.contextmanager
    def client(self, db: int = 0, **kwargs: Any) -> Iterator[redis.Redis]:
        """A ``redis.Redis`` for ``db``, closed (pool disconnected) on exit.

        Defaults: 2 s socket/connect timeouts and no retries; any keyword
        argument (``socket_timeout=0.2``, ``decode_responses=True``, ...)
        overrides them and is passed to ``redis.Redis.from_url``.
        """
        client = redis.Redis.from_url(
            self.url_for(db), **self._client_kwargs(HELPER_SOCKET_TIMEOUT, kwargs)
        )
        try:
            yield client
        finally:
            client.close()
            client.connection_pool.disconnect()

    def client_list(self) -> list[dict[str, str]]:
        """Parsed CLIENT LIST, without the helper connection used to fetch it."""
        with self._helper(self.port, 0) as client, client.pipeline(transaction=False) as pipe:
            # A pipeline runs both commands on one connection: the helper's own.
            pipe.client_id()
            pipe.client_list()
            own_id, entries = pipe.execute()
        return [entry for entry in entries if entry.get("id") != str(own_id)]

    def info(self, section: str) -> dict[str, Any]:
        """Parsed ``INFO <section>``."""
        with self._helper(self.port, 0) as client:
            return client.info(section)


class SilentListener:
    """A loopback TCP listener that accepts connections and never answers.

    A background thread accepts and holds every connection until ``stop()``,
    which closes all sockets and joins the thread.
    """

    host: str = HOST

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"<SilentListener {self.host}:{self._port}>"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SilentListener has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def connection_count(self) -> int:
        """How many connections have been accepted (and are being held)."""
        with self._lock:
            return len(self._conns)

    def start(self) -> Self:
        if self._sock is not None:
            raise RuntimeError(f"{self!r} is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.settimeout(0.05)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._port = sock.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._accept_loop,
            args=(sock,),
            name=f"silent-listener-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _addr = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.append(conn)

    def stop(self) -> None:
        """Close every socket and join the thread.  Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
