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
import time
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from testproject.supervisor import HOST, Child, NotReady, free_port, start

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self  # typing.Self is 3.11+

__all__ = ["HOST", "SERVICE", "RedisServer", "SentinelSet", "SilentListener", "free_port"]

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


# ------------------------------------------------------------------- Sentinel

#: The service every test Sentinel set monitors.
SERVICE = "mymaster"
#: How long a Sentinel set may take to form, and a failover to finish.
SENTINEL_TIMEOUT = 20.0


class SentinelServer(RedisServer):
    """One ``redis-server --sentinel`` watching ``SERVICE`` on a master of the tests'."""

    def __init__(self, workdir: pathlib.Path, master_port: int, *, quorum: int = 2) -> None:
        super().__init__(workdir)
        self.master_port = master_port
        self.quorum = quorum

    def _command(self, port: int) -> list[str]:
        config = self.workdir / f"sentinel-{port}.conf"
        if not config.exists():  # a sentinel rewrites its file: a restart keeps what it learnt
            config.write_text(
                f"sentinel monitor {SERVICE} {self.host} {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        return [
            "redis-server", str(config), "--sentinel",
            "--port", str(port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--logfile", str(self._log_path(port)),
            "--daemonize", "no",
        ]  # fmt: skip

    def sentinel(self, *args: str) -> Any:
        """One SENTINEL command's reply (``SENTINEL MASTER mymaster``: a dict)."""
        with self._helper(self.port, 0) as client:
            return client.execute_command("SENTINEL", *args)


class SentinelSet:
    """A master, a replica and three sentinels (quorum 2), all real, on loopback.

    ``start()`` returns once the replica is in sync and every sentinel knows
    the replica and the two other sentinels, so a failover can run at once.
    """

    def __init__(self, workdir: pathlib.Path, *, replicas: int = 1, sentinels: int = 3) -> None:
        self.workdir = pathlib.Path(workdir)
        self.master = RedisServer(self.workdir / "master")
        self.replicas: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []
        self._replica_count = replicas
        self._sentinel_count = sentinels

    @property
    def servers(self) -> list[RedisServer]:
        """The data servers: the first master, then the replicas (roles change on failover)."""
        return [self.master, *self.replicas]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels' ``(host, port)``, as ``OPTIONS["SENTINELS"]`` takes them."""
        return [(sentinel.host, sentinel.port) for sentinel in self.sentinels]

    def start(self) -> Self:
        with contextlib.ExitStack() as undo:
            undo.callback(self.stop)
            self.master.start()
            for index in range(self._replica_count):
                replica = RedisServer(
                    self.workdir / f"replica-{index}",
                    extra_args=["--replicaof", HOST, str(self.master.port)],
                )
                self.replicas.append(replica)
                replica.start()
            for index in range(self._sentinel_count):
                sentinel = SentinelServer(self.workdir / f"sentinel-{index}", self.master.port)
                self.sentinels.append(sentinel)
                sentinel.start()
            self._wait(self._formed, "the replicas in sync and every sentinel knowing the rest")
            undo.pop_all()
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.master]:
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def master_port(self) -> int:
        """The port the running sentinels agree is the master's (raises if they do not)."""
        named = {
            int(_text(s.sentinel("GET-MASTER-ADDR-BY-NAME", SERVICE)[1])) for s in self._alive()
        }
        if len(named) != 1:
            raise AssertionError(f"the sentinels name {sorted(named)} as the master")
        return named.pop()

    def server_at(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def failover(self) -> tuple[RedisServer, RedisServer]:
        """``SENTINEL FAILOVER``; returns ``(old, new)`` master once every sentinel names the new.

        The old master turns replica a few seconds later (at a sentinel's next
        look at it), and only then closes its clients' connections.
        """
        old = self.server_at(self.master_port())
        self.sentinels[0].sentinel("FAILOVER", SERVICE)

        def switched() -> bool:
            try:
                port = self.master_port()
            except AssertionError:
                return False
            return port != old.port and self.server_at(port).info("replication")["role"] == "master"

        self._wait(switched, "a failover that every sentinel agrees on, its master promoted")
        return old, self.server_at(self.master_port())

    def _alive(self) -> list[SentinelServer]:
        return [sentinel for sentinel in self.sentinels if sentinel.running]

    def _formed(self) -> bool:
        try:
            synced = [r.info("replication").get("master_link_status") for r in self.replicas]
            states = [sentinel.sentinel("MASTER", SERVICE) for sentinel in self.sentinels]
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        return all(link == "up" for link in synced) and all(
            int(_field(state, "num-slaves")) == self._replica_count
            and int(_field(state, "num-other-sentinels")) == self._sentinel_count - 1
            for state in states
        )

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SENTINEL_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {server.log_path}\n{server.log_path.read_text(errors='replace')[-1500:]}"
                    for server in [*self.sentinels, *self.servers]
                    if server.log_path.exists()
                )
                raise RuntimeError(f"no {what} within {SENTINEL_TIMEOUT:g} s\n{logs}")
            time.sleep(0.05)


def _field(state: Any, name: str) -> Any:
    """A field of a ``SENTINEL MASTER`` reply: a dict or a flat list, of bytes or str."""
    items = state.items() if isinstance(state, dict) else zip(state[::2], state[1::2], strict=True)
    fields = {_text(key): _text(value) for key, value in items}
    return fields[name]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
