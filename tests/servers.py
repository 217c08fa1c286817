"""Processes that use sized pools the way a web worker does, for the command's tests.

``cache_worker()`` runs ``python -m tests.servers`` in a child process: a minimal
Django with one sized cache alias that publishes its pool figures, holds some
connections in use, and keeps using the cache until its stdin closes. It then
exits cleanly, so its ``atexit`` hook removes its records. ``Load`` sends HTTP
traffic from client threads until stopped. Everything started here is stopped
and reaped, pass or fail.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testproject.supervisor import start

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from typing_extensions import Self

# Not resolved: under tox, the directory of links tests/import_root.py makes, so a
# child started here imports django_connhealth from where this process does.
ROOT = Path(__file__).absolute().parent.parent
#: Seconds a worker may take to start, publish and say so (a loaded box is slow).
READY_TIMEOUT = 30.0
#: Seconds a worker may take to exit once its stdin closes.
STOP_TIMEOUT = 15.0
#: Seconds between two cache calls of a worker: often enough to publish on time.
WORKER_TICK = 0.1
#: Variables of the outside environment that would change what a child does
#: (pytest-django sets DJANGO_SETTINGS_MODULE to the suite's own settings).
OUTSIDE = (
    "CONNHEALTH_",
    "GUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "UWSGI_",
    "DJANGO_",
    "REDIS_URL",
    "DEMO_",
)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings that would change a child's pools."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(OUTSIDE)}
    env.update(extra)
    return env


def publisher_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "connhealth-publish"]


def join_publishers(timeout: float = READY_TIMEOUT) -> None:
    """Wait for every publish in flight in this process to end.

    The heartbeat's thread may be starting one right now: such a thread is
    listed before it has started, and cannot be joined until it has.
    """
    deadline = time.monotonic() + timeout
    for thread in publisher_threads():
        while thread.ident is None and time.monotonic() < deadline:
            time.sleep(0.001)
        thread.join(max(deadline - time.monotonic(), 0.01))
        if thread.is_alive():
            raise AssertionError(f"{thread!r} still publishing after {timeout} s")


# --------------------------------------------------------------------- a worker


@dataclass
class CacheWorker:
    """A running ``python -m tests.servers`` child: its pid and what it reported."""

    proc: subprocess.Popen[bytes]
    pid: int
    host: str
    report: dict[str, Any]


@contextlib.contextmanager
def cache_worker(
    url: str, host: str, *, hold: int = 1, interval: float = 1.0, log_path: Path | None = None
) -> Iterator[CacheWorker]:
    """A child process that publishes figures for alias ``default`` at ``url``.

    It holds ``hold`` connections in use, has published a record saying so when
    this yields, and keeps publishing every ``interval`` seconds until the block
    ends; then its stdin closes and it exits cleanly (``atexit`` removes its
    record), or is SIGKILLed after STOP_TIMEOUT.
    """
    cmd = [sys.executable, "-m", "tests.servers", url, str(interval), str(hold)]
    child = start(
        cmd,
        name="cache worker",
        log=log_path,
        env=child_env(CONNHEALTH_HOST=host),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None if log_path else subprocess.DEVNULL,
        own_group=False,
    )
    assert child.proc.stdin is not None
    assert child.proc.stdout is not None
    try:
        report = json.loads(child.wait_line(READY_TIMEOUT))
        assert "error" not in report, report["error"]
        yield CacheWorker(proc=child.proc, pid=child.pid, host=host, report=report)
    finally:
        with contextlib.suppress(BrokenPipeError):
            child.proc.stdin.close()
        child.stop(STOP_TIMEOUT, signum=None)
        child.proc.stdout.close()


# ----------------------------------------------------------------------- traffic


class Load:
    """``clients`` threads GETting ``url`` in a loop until the block ends."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.clients = clients
        self.statuses: collections.Counter[int | str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self) -> None:
        from testproject.traffic import get

        while not self._stop.is_set():
            status, _ = get(self.url)
            with self._lock:
                self.statuses[status] += 1

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def __enter__(self) -> Self:
        for number in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=STOP_TIMEOUT)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hung"


# ------------------------------------------------------------ the worker's body


def _get_connection(pool: Any) -> Any:
    """Take a connection out of ``pool``, as redis-py's client does."""
    from redis.connection import BlockingConnectionPool

    # redis-py 5.0 requires a command name here; later versions warn when one is given.
    param = inspect.signature(BlockingConnectionPool.get_connection).parameters["command_name"]
    if param.default is inspect.Parameter.empty:
        return pool.get_connection("PING")
    return pool.get_connection()


def _worker_main(url: str, interval: float, hold: int) -> int:
    import django
    from django.conf import settings

    from django_connhealth import sized_caches

    settings.configure(
        CACHES=sized_caches(
            {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}}
        ),
        CONNHEALTH_PUBLISH_SECONDS=interval,
        INSTALLED_APPS=["django_connhealth"],
    )
    django.setup()
    from django.core.cache import cache

    backend: Any = cache
    backend.set("connhealth-test:worker", 1)  # opens a connection, publishes a first record
    pool = backend.client.get_client().connection_pool
    held = [_get_connection(pool) for _ in range(hold)]
    join_publishers()
    # The next record is due an interval after the first: it shows the held ones in use.
    time.sleep(interval)
    backend.get("connhealth-test:worker")
    join_publishers()
    print(json.dumps({"pid": os.getpid(), "stats": pool.figures().as_dict()}), flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], WORKER_TICK)
        if ready and not sys.stdin.readline():
            break  # stdin closed: exit cleanly
        backend.get("connhealth-test:worker")
    for connection in held:
        pool.release(connection)
    join_publishers()
    return 0


if __name__ == "__main__":
    try:
        code = _worker_main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
    except Exception:
        import traceback

        print(json.dumps({"error": traceback.format_exc()}), flush=True)
        code = 1
    sys.exit(code)
