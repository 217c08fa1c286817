"""Shared machinery of the benchmarks: child processes, servers, load, statistics.

Every process started here (with testproject.supervisor) is registered and
stopped by ``Children.stop_all()`` (the runner calls it in a ``finally``: on
success, failure, Ctrl-C or SIGTERM). Each child also gets SIGTERM when the
runner dies, so even a runner killed with SIGKILL leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testproject import supervisor, wrk  # noqa: E402
from testproject.sockets import ESTABLISHED, sockets_of, tcp_connections  # noqa: E402
from testproject.supervisor import HOST, Child, NotReady, free_port, processes  # noqa: E402
from testproject.traffic import get  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

BENCH = ROOT / "bench"
WORK = BENCH / ".work"
VENV_BIN = Path(sys.executable).parent

# Variables that would change how testproject sizes its pools or what it runs.
_SCRUBBED_PREFIXES = ("CONNHEALTH_", "UWSGI_", "DJANGO_", "BENCH_", "TESTPROJECT_")
_SCRUBBED = {"GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "REDIS_URL", "PYTHONPATH"}


# -- processes ------------------------------------------------------------------------


class Children:
    """Every process the benchmarks started, and their redis-servers, stopped newest first.

    Each child gets SIGTERM when the runner dies, however it dies (``die_with_parent``).
    """

    def __init__(self) -> None:
        self._children = supervisor.Children()
        self._redis: list[RedisServer] = []
        self._lock = threading.Lock()

    def start(self, name: str, cmd: Sequence[str], **kwargs: Any) -> Child:
        """``cmd`` in a group of its own (so that its whole group can be stopped)."""
        return self._children.start(cmd, name=name, die_with_parent=True, **kwargs)

    def stop(self, child: Child, timeout: float = 10.0) -> None:
        """SIGTERM the child's process group, wait, then SIGKILL whatever is left of it."""
        self._children.stop(child, timeout)

    def redis(self, workdir: Path, *extra_args: str) -> RedisServer:
        server = _BenchRedis(workdir, extra_args=("--maxclients", "10000", *extra_args))
        with self._lock:
            self._redis.append(server)
        server.start()
        return server

    def stop_redis(self, server: RedisServer) -> None:
        with self._lock:
            if server in self._redis:
                self._redis.remove(server)
        server.stop()

    def stop_all(self) -> None:
        self._children.stop_all(10.0)
        while True:
            with self._lock:
                if not self._redis:
                    break
                server = self._redis.pop()
            server.stop()


class _BenchRedis(RedisServer):
    """tests.redis_server.RedisServer, bound to the runner's life."""

    die_with_parent = True


CHILDREN = Children()


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, without anything that sizes pools, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONPATH"] = str(ROOT)
    env["TESTPROJECT_VAR_DIR"] = str(WORK / "var")
    env.update(extra)
    return env


# -- gunicorn -------------------------------------------------------------------------


def _no_control_socket() -> list[str]:
    import gunicorn

    return ["--no-control-socket"] if gunicorn.version_info >= (25, 1) else []


class Gunicorn:
    """testproject under ``gunicorn -k gthread --preload`` on a free loopback port.

    ``preload=False``: each worker loads the application itself (as the fault tests run it).
    """

    def __init__(
        self,
        name: str,
        *,
        settings: str,
        redis_url: str,
        workers: int,
        threads: int,
        preload: bool = True,
        **env: str,
    ) -> None:
        self.name = name
        self.preload = preload
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.log = WORK / f"gunicorn-{name}.log"
        self.env = base_env(DJANGO_SETTINGS_MODULE=settings, REDIS_URL=redis_url, **env)
        self.child: Child | None = None

    def start(self, timeout: float = 60.0) -> Gunicorn:
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "testproject.wsgi:application",
            "--bind", f"{HOST}:{self.port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--worker-class", "gthread",
            *(["--preload"] if self.preload else []),
            "--graceful-timeout", "5",
            "--chdir", str(ROOT),
            "--error-logfile", str(self.log),
            "--log-level", "warning",
            *_no_control_socket(),
        ]  # fmt: skip
        self.child = CHILDREN.start(
            f"gunicorn {self.name}", cmd, env=self.env, log=self.log, append=True
        )
        try:
            self.child.wait_until(
                lambda: get(f"{self.base}/ok", timeout=2.0)[0] == 200, timeout, "answering /ok"
            )
        except NotReady as error:
            raise RuntimeError(str(error)) from None
        # With --preload the workers fork at once; give them a moment to all listen.
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.child is not None:
            CHILDREN.stop(self.child)
            self.child = None

    def spread(self) -> list[int]:
        """Established client connections held by each worker, fewest first (Linux /proc)."""
        assert self.child is not None
        accepted = {
            c.socket
            for c in tcp_connections()
            if c.state == ESTABLISHED and c.local_port == self.port
        }
        return sorted(len(sockets_of(pid) & accepted) for pid in processes(parent=self.child.pid))

    def balanced(self, connections: int) -> bool:
        """Every worker holds at least half its share of ``connections``.

        Each worker accepts from the one listening socket, and keep-alive
        connections stay where they were accepted: now and then one worker
        takes nearly all of them and the run measures half the server.
        """
        spread = self.spread()
        return len(spread) == self.workers and spread[0] * 2 * self.workers >= connections

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- load -----------------------------------------------------------------------------


def load_generator() -> str:
    """``wrk`` when installed, else the Python fallback (labelled in every table)."""
    return "wrk" if shutil.which("wrk") else "python"


#: Tries at a run whose connections a worker hogs before the run is taken as it is.
BALANCE_TRIES = 5
#: Seconds into a run at which the spread of its connections is looked at.
BALANCE_CHECK_AFTER = 0.3


def run_load(
    url: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    balanced: Callable[[int], bool] | None = None,
) -> dict[str, float]:
    """Drive ``url`` with keep-alive connections; throughput, latency and errors.

    With ``balanced``, a run whose connections are not spread over the
    server's workers (``balanced(connections)`` is false shortly after the
    start) is stopped and started again, up to BALANCE_TRIES times; the
    result's ``restarts`` counts them.
    """
    for restarts in range(BALANCE_TRIES):
        proc = start_load(url, connections, seconds, threads)
        if balanced is not None and restarts < BALANCE_TRIES - 1:
            time.sleep(BALANCE_CHECK_AFTER)
            if not balanced(connections):
                CHILDREN.stop(proc)
                continue
        result = _finish_load(proc, seconds)
        result["restarts"] = restarts
        return result
    raise AssertionError("unreachable")


def start_load(url: str, connections: int, seconds: float, threads: int) -> Child:
    """A load on ``url`` for ``seconds``, started and left running (stop it, or wait)."""
    threads = max(1, min(threads, connections))
    if load_generator() == "wrk":
        cmd = wrk.command(url, connections, seconds, threads)
    else:
        cmd = [
            sys.executable, str(BENCH / "pyload.py"),
            "--connections", str(connections), "--seconds", str(seconds), url,
        ]  # fmt: skip
    return CHILDREN.start("load", cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish_load(child: Child, seconds: float) -> dict[str, float]:
    try:
        out, err = child.proc.communicate(timeout=seconds + 60)
    finally:
        CHILDREN.stop(child)
    try:
        return wrk.parse(out)
    except ValueError as error:
        raise RuntimeError(f"{load_generator()}: {error} {err[-500:]!r}") from None


# -- Redis server side ----------------------------------------------------------------


class ClientsMonitor:
    """Polls ``INFO clients`` on one connection of its own; keeps the peak of connected_clients.

    The monitor's own connection is included in every reading.
    """

    def __init__(self, url: str, interval: float = 0.02) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clients-monitor", daemon=True)
        self.peak = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                clients = int(self._client.info("clients")["connected_clients"])
                self.peak = max(self.peak, clients)
                self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> ClientsMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()
        self._client.connection_pool.disconnect()


# -- statistics -----------------------------------------------------------------------


def rotated(items: Sequence[Any], round_no: int) -> list[Any]:
    """Round ``n`` runs the configurations starting at item ``n``: no fixed first or last."""
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


class Rounds:
    """Per-configuration measurements across interleaved rounds."""

    def __init__(self) -> None:
        self.data: dict[Any, list[dict[str, float]]] = defaultdict(list)

    def add(self, key: Any, result: dict[str, float]) -> None:
        self.data[key].append(result)

    def median(self, key: Any, field: str) -> float:
        return median(r[field] for r in self.data[key])

    def total(self, key: Any, field: str) -> float:
        return sum(r[field] for r in self.data[key])

    def maximum(self, key: Any, field: str) -> float:
        return max(r[field] for r in self.data[key])

    def ratio(self, num: Any, den: Any, field: str) -> float:
        """Median over rounds of the per-round ratio (each pair measured in the same round)."""
        pairs = zip(self.data[num], self.data[den], strict=True)
        return median(a[field] / b[field] for a, b in pairs if b[field])


# -- formatting -----------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


# -- profiling ------------------------------------------------------------------------


def pyspy_record(pid: int, seconds: float, output: Path) -> Child:
    """Start ``py-spy record`` on ``pid`` and its children (collapsed stacks to ``output``).

    ``--gil``: only the thread holding the GIL is sampled, so the profile shows where
    Python's CPU time goes (threads waiting on a lock, a socket or a queue are left out).
    """
    cmd = [
        str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses",
        "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
        "--output", str(output), "--nonblocking", "--gil",
    ]  # fmt: skip
    return CHILDREN.start("py-spy", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarize_collapsed(
    path: Path,
    *,
    top: int = 15,
    keep: Callable[[str], bool] | None = None,
    focus: Sequence[str] = ("django_connhealth",),
) -> str:
    """Top frames of a collapsed-stack file: by self samples, then inclusive samples.

    ``keep`` limits the count to stacks with a frame it accepts; ``focus`` adds a
    block with the inclusive share of every frame whose name contains one of its strings.
    """
    self_counts: dict[str, int] = defaultdict(int)
    incl_counts: dict[str, int] = defaultdict(int)
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no profile was written)"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if "(" in f]
        if keep is not None and not any(keep(f) for f in frames):
            continue
        total += count
        if frames:
            self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    if not total:
        return "(no samples)"

    def block(title: str, counts: dict[str, int], limit: int = top) -> list[str]:
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [title, *(f"  {100 * c / total:5.1f}%  {name}" for name, c in rows)]

    focused = {k: v for k, v in incl_counts.items() if any(f in k for f in focus)}
    return "\n".join(
        [
            f"{total} samples",
            *block("self (where the CPU was):", self_counts),
            *block("inclusive (what was on the stack):", incl_counts),
            *block(f"inclusive, frames of {' / '.join(focus)}:", focused, 2 * top),
        ]
    )
