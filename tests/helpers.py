"""Helpers shared by tests (fixtures live in conftest.py).

No test module imports another: what two of them need lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import inspect
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.pool import SentinelConnectionFactory as DjangoRedisSentinelConnectionFactory
from hypothesis import HealthCheck, settings
from redis.connection import BlockingConnectionPool
from redis.sentinel import SentinelConnectionPool

from django_connhealth import defaults, sized_caches
from django_connhealth.pool import SizedConnectionPool
from testproject.demo import gunicorn_no_control_socket
from testproject.supervisor import Child, NotReady, free_port, start
from testproject.traffic import fan_out, get
from tests.servers import ROOT, child_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from django.test.client import _MonkeyPatchedASGIResponse, _MonkeyPatchedWSGIResponse

    from tests.redis_server import RedisServer

    Response = _MonkeyPatchedWSGIResponse | _MonkeyPatchedASGIResponse

# ---------------------------------------------------------------------- waiting

#: Upper bound for waits that usually take a fraction of a second.
SLOW = 30.0


def wait_for(predicate: Callable[[], bool], timeout: float = SLOW, what: str = "") -> None:
    """Return once ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what or 'the condition'}"
        time.sleep(0.1)


def unique_host() -> str:
    """A ``CONNHEALTH_HOST`` of this test's own, so the connection names it finds are its own."""
    return f"t{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------- hypothesis

# Bounded, deterministic runs; no example database written into the source tree.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def is_valid_name(name: str) -> bool:
    """Whether Redis accepts ``name`` as a client name (printable ASCII, no space)."""
    return bool(name) and all("!" <= char <= "~" for char in name)


# ---------------------------------------------------------------- caches, pools

DJANGO_REDIS = "django_redis.cache.RedisCache"
#: A LOCATION for tests of pure functions: nothing connects to it.
CACHE_URL = "redis://cache.internal:6379/0"
#: The environment ``sized_caches()`` reads in those tests: a fixed host name.
ENVIRON = {"CONNHEALTH_HOST": "web-1"}


def redis_cache(location: Any = CACHE_URL, **options: Any) -> dict[str, Any]:
    """One django-redis alias as a user writes it in CACHES."""
    config: dict[str, Any] = {"BACKEND": DJANGO_REDIS, "LOCATION": location}
    if options:
        config["OPTIONS"] = options
    return config


def caches_for(location: str = CACHE_URL) -> dict[str, dict[str, Any]]:
    """CACHES with one django-redis alias, ``default``, as a user writes it."""
    return {"default": redis_cache(location)}


def sized_one(**options: Any) -> dict[str, Any]:
    """The OPTIONS ``sized_caches`` gives a single django-redis alias."""
    sized = sized_caches({"default": redis_cache(**options)}, environ=ENVIRON)
    result: dict[str, Any] = sized["default"]["OPTIONS"]
    return result


def pool_kwargs(sized: dict[str, dict[str, Any]], alias: str = "default") -> dict[str, Any]:
    """The CONNECTION_POOL_KWARGS ``sized_caches`` gave ``alias``."""
    kwargs: dict[str, Any] = sized[alias]["OPTIONS"]["CONNECTION_POOL_KWARGS"]
    return kwargs


def sized_report(sized: dict[str, dict[str, Any]], alias: str = "default") -> dict[str, Any]:
    """What ``sized_caches`` recorded for ``alias`` (its ``CONNHEALTH`` option)."""
    recorded: dict[str, Any] = sized[alias]["OPTIONS"][defaults.OPTIONS_KEY]
    return recorded


#: Counts every count variable refuses.
MALFORMED_COUNTS = (
    "abc",
    "0",
    "-3",
    "2.5",
    " ",
    "\t",
    "1e3",
    "٣",  # ARABIC-INDIC DIGIT THREE: int() accepts it, we do not
    "²",
    "+4",
    "0x10",
    "1_000",
    "4 workers",
    "4,5",
    str(defaults.MAX_COUNT + 1),
    "9" * 30,
    "1" * 5000,  # int() refuses more than 4300 digits with ValueError
    "00",
)


def redis_caches(
    url: str, environ: dict[str, str] | None = None, **options: object
) -> dict[str, dict[str, object]]:
    """CACHES for one django-redis alias at ``url``, passed through sized_caches."""
    config: dict[str, object] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}
    if options:
        config["OPTIONS"] = options
    return sized_caches({"default": config}, environ=environ or {})


def pool_of(cache_backend: Any) -> SizedConnectionPool:
    """The pool django-redis uses for this cache object (primary server)."""
    pool = cache_backend.client.get_client().connection_pool
    assert isinstance(pool, SizedConnectionPool)
    return pool


# redis-py 5.0 requires a command name here; later versions warn when one is given.
_NEEDS_COMMAND_NAME = (
    inspect.signature(BlockingConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
)


def acquire(pool: Any) -> Any:
    """Take a connection out of the pool, as redis-py's client does (and keep it)."""
    if _NEEDS_COMMAND_NAME:
        return pool.get_connection("PING")
    return pool.get_connection()


# ------------------------------------------------------------- health endpoints

PROBE = "django_connhealth.middleware.ProbeMiddleware"
APP_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
CHECK_TIMEOUT = 1.0
#: What a readiness answer may take: the setting plus the margin the spec allows.
BOUND = CHECK_TIMEOUT + 0.5
TOKEN = "t0k3n-secret"
HEALTH_JSON = "application/health+json"
PATHS = ["/health/live", "/health/ready", "/health/"]
READY_PATHS = ["/health/ready", "/health/"]
FAIL_DOC = {"status": "fail", "checks": {"redis.default:responseTime": [{"status": "fail"}]}}
WARN_DOC = {"status": "warn", "checks": {"redis.default:responseTime": [{"status": "warn"}]}}
#: ``health(..., CONNHEALTH_CHECK_TIMEOUT=UNSET)``: leave the setting to the environment.
UNSET = object()
#: A kubelet's Host header: a pod IP, never in ALLOWED_HOSTS.
POD_IP = "10.1.2.3:8000"


@contextlib.contextmanager
def health(
    location: str,
    *,
    probe: bool = True,
    pool: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    **extra: Any,
) -> Iterator[None]:
    """Settings with one sized django-redis alias at ``location`` and the health URLs.

    ``pool`` is its CONNECTION_POOL_KWARGS, ``options`` more of its OPTIONS,
    ``extra`` more settings.
    """
    options = dict(options or {})
    if pool is not None:
        options["CONNECTION_POOL_KWARGS"] = pool
    extra.setdefault("CONNHEALTH_CHECK_TIMEOUT", CHECK_TIMEOUT)
    if extra["CONNHEALTH_CHECK_TIMEOUT"] is UNSET:
        del extra["CONNHEALTH_CHECK_TIMEOUT"]  # from the environment
    with override_settings(
        CACHES=redis_caches(location, **options),
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[PROBE, *APP_MIDDLEWARE] if probe else APP_MIDDLEWARE,
        **extra,
    ):
        yield


def timed(call: Callable[..., Response], *args: Any, **kwargs: Any) -> tuple[Response, float]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


def body(response: Response) -> dict[str, Any]:
    assert response["Content-Type"] == HEALTH_JSON
    assert response["Cache-Control"] == "no-store"
    document: dict[str, Any] = json.loads(response.content)
    return document


def assert_detail(response: Response, location: str) -> None:
    assert response.status_code == 200
    document = body(response)
    assert document["status"] == "pass"
    [check] = document["checks"]["redis.default:responseTime"]
    assert check["componentId"] == location
    assert check["componentType"] == "datastore"
    assert check["observedUnit"] == "ms"
    assert isinstance(check["observedValue"], float)
    assert check["observedValue"] >= 0
    assert check["status"] == "pass"
    assert check["time"].endswith("Z")
    [connections] = document["checks"]["redis.default:connections"]
    assert connections["componentId"] == location
    assert connections["observedUnit"] == "connections"
    assert connections["max_connections"] == 3  # 1 thread + headroom 2
    for figure in ("in_use", "idle", "created", "peak_in_use", "waits", "timeouts"):
        assert isinstance(connections[figure], int), figure


def connhealth_clients(server: RedisServer) -> int:
    """Connections to ``server`` that this app named."""
    return sum(1 for client in server.client_list() if client["name"].startswith("connhealth:"))


def pings(server: RedisServer) -> int:
    """PING commands ``server`` has run."""
    stats = server.info("commandstats").get("cmdstat_ping", {})
    return int(stats.get("calls", 0))


# ---------------------------------------------------------------------- command


def connhealth(*args: str, **options: Any) -> tuple[str, str, int]:
    """``manage.py connhealth ARGS``: its stdout, its stderr and its exit code.

    A CommandError ends the command the way manage.py ends it: its message on
    stderr, its ``returncode`` as the exit code.
    """
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("connhealth", *args, stdout=out, stderr=err, **options)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + f"CommandError: {exc}\n", exc.returncode
    return out.getvalue(), err.getvalue(), 0


def report_json(*args: str) -> tuple[dict[str, Any], int]:
    out, err, code = connhealth("--format", "json", *args)
    assert "Traceback" not in err
    return json.loads(out), code


# ------------------------------------------------------------------------- fork


def alone_or_rerun(request: pytest.FixtureRequest) -> bool:
    """Whether this test may fork here; if not, it has been run in a fresh interpreter.

    Forking with other threads alive is unsafe (and deprecated from 3.12), and
    earlier tests leave library thread pools behind (asgiref's, for one): then
    the test runs again in a fresh interpreter, where the only thread is ours.
    """
    if threading.active_count() == 1:
        return True
    # From ROOT (where the children of this run start, so the installed package is
    # imported), with this run's configuration: the test named by path, as the cwd differs.
    this_run = request.config
    args = ["-q", "-p", "no:cacheprovider", "--rootdir", str(this_run.rootpath)]
    args += ["-c", str(this_run.inipath), f"{request.path}::{request.node.name}"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    return False


def report_from_child(
    report_fd: int, make_report: Callable[[], dict[str, Any]], *, hold_fd: int | None = None
) -> NoReturn:
    """End a forked child: ``make_report()`` (or the traceback it raised) as a JSON line.

    The line goes to ``report_fd``. With ``hold_fd``, the child then waits for a
    byte there (or its closing), so what it holds stays open until the parent has
    looked. ``os._exit`` (0, or 2 after an error) skips the parent's clean-up.
    """
    code = 1
    try:
        try:
            report = make_report()
        except BaseException:
            report = {"error": traceback.format_exc()}
        os.write(report_fd, json.dumps(report).encode() + b"\n")
        if hold_fd is not None:
            os.read(hold_fd, 1)
        code = 0 if "error" not in report else 2
    finally:
        os._exit(code)


# --------------------------------------------------------------------- gunicorn

#: Seconds for gunicorn to boot and answer, and for it to stop.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
BOOTED = re.compile(r"Booting worker with pid: (\d+)")


@contextlib.contextmanager
def serving(
    name: str,
    cmd: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    workers: int,
    booted: re.Pattern[str],
) -> Iterator[tuple[str, Child, list[int]]]:
    """A server of testproject on a free port (``{port}`` in ``cmd``), once ``workers``
    log lines match ``booted`` (each with a pid) and it answers ``/ok``.

    Yields its base URL, its process and the pids the log named.
    """
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    base = f"http://127.0.0.1:{port}"

    def pids() -> list[int]:
        return [int(pid) for pid in booted.findall(log_path.read_text(errors="replace"))]

    server = start(cmd, name=name, log=log_path, env=env, cwd=ROOT)
    try:
        try:
            server.wait_until(
                lambda: len(pids()) >= workers and get(f"{base}/ok")[0] == 200,
                READY_TIMEOUT,
                f"starting {workers} workers and answering /ok",
            )
        except NotReady as error:
            pytest.fail(str(error))
        yield base, server, pids()
    finally:
        server.stop(STOP_TIMEOUT)


@contextlib.contextmanager
def gunicorn(
    args: Sequence[str], env: dict[str, str], log_path: Path, workers: int
) -> Iterator[tuple[str, subprocess.Popen[bytes], list[int]]]:
    """testproject.wsgi under gunicorn: (base URL, master, worker pids), once all booted."""
    cmd = [sys.executable, "-m", "gunicorn", *args, *gunicorn_no_control_socket()]
    cmd += ["-b", "127.0.0.1:{port}", "testproject.wsgi"]
    with serving("gunicorn", cmd, env, log_path, workers, BOOTED) as (base, master, pids):
        yield base, master.proc, pids


SPAWNED = re.compile(r"spawned uWSGI worker \d+ \(pid: (\d+)")
UWSGI = Path(sys.executable).parent / "uwsgi"


@contextlib.contextmanager
def uwsgi(
    args: list[str], env: dict[str, str], log: Path, workers: int
) -> Iterator[tuple[str, list[int]]]:
    """testproject.wsgi under uWSGI: (base URL, worker pids), once all spawned and answering."""
    if not UWSGI.exists():
        pytest.skip("uwsgi is not installed beside this interpreter")
    # --die-on-term: uWSGI reloads on SIGTERM otherwise; --home: this environment's packages
    cmd = [str(UWSGI), "--die-on-term", "--need-app", "--home", sys.prefix, *args]
    cmd += ["--http-socket", "127.0.0.1:{port}", "--module", "testproject.wsgi:application"]
    with serving("uwsgi", cmd, env, log, workers, SPAWNED) as (base, _, pids):
        yield base, pids


STARTED = re.compile(r"Started server process \[(\d+)\]")


@contextlib.contextmanager
def uvicorn(
    args: list[str], env: dict[str, str], log: Path, workers: int
) -> Iterator[tuple[str, list[int]]]:
    """testproject.asgi under ``python -m uvicorn``: (base URL, worker pids), once all started."""
    cmd = [sys.executable, "-m", "uvicorn", "testproject.asgi:application", *args]
    cmd += ["--host", "127.0.0.1", "--port", "{port}"]
    with serving("uvicorn", cmd, env, log, workers, STARTED) as (base, server, pids):
        # uvicorn --workers logs "Started parent process" for itself
        assert server.proc.pid not in pids
        yield base, pids


# ---------------------------------------------------------------- probe listener


def ask(
    address: tuple[str, int], path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes, float]:
    """(status, headers, body, seconds) of one request on a connection of its own."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    started = time.monotonic()
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), body, time.monotonic() - started
    finally:
        connection.close()


async def _storm(address: tuple[str, int], probes: int, path: str) -> list[tuple[int, float]]:
    async def probe() -> tuple[int, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
            answer = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        return int(answer.split(b" ", 2)[1]), time.monotonic() - started

    return await asyncio.gather(*(probe() for _ in range(probes)))


def storm(address: tuple[str, int], probes: int, path: str = "/ready") -> tuple[Counter[int], Any]:
    """``probes`` concurrent probes: (statuses, sorted latencies).

    The collector is off meanwhile: a pause of this test process's heap (a whole
    suite's objects) would stop the listener's thread too, and be measured as its.
    """
    gc.collect()
    gc.disable()
    try:
        answers = asyncio.run(_storm(address, probes, path), debug=False)  # no tracing
    finally:
        gc.enable()
    return Counter(status for status, _ in answers), sorted(elapsed for _, elapsed in answers)


def listener_env(redis_url: str, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """A child's environment for testproject with its probe listener on loopback ``port``."""
    return child_env(
        REDIS_URL=redis_url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PROBE_PORT=str(port),
        CONNHEALTH_PROBE_HOST="127.0.0.1",
        **extra,
    )


def listening_pids(port: int) -> set[int]:
    """The pids of the processes that hold a listening TCP socket on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            links = {
                os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")
            }
        except OSError:  # gone, or not ours to read
            continue
        if links & inodes:
            pids.add(int(entry))
    return pids


def pools_of_every_worker(base: str, workers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The /pool answer of each worker, asked until every worker has a pool.

    Which worker accepts a connection is up to the kernel, so ask many at once,
    and send cache work again if a worker has not built its pool yet.
    """
    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        for status, text in fan_out([f"{base}/pool"] * 32, 16):
            assert status == 200, (status, text)
            answer = json.loads(text)
            answers[answer["pid"]] = answer
        if all(answers.get(pid, {}).get("pools") for pid in workers):
            return answers
        if time.monotonic() > deadline:
            pytest.fail(f"not every worker of {workers} answered with a pool: {answers}")
        assert [status for status, _ in fan_out([f"{base}/work"] * 32, 16)] == [200] * 32


class OtherRedisCache(DjangoRedisCache):
    """A cache backend of another package built on django-redis (as django-prometheus's is)."""


class PlainSentinelPool(SentinelConnectionPool):
    """A user's own Sentinel pool class: non-blocking, like redis-py's."""


class OtherSentinelFactory(DjangoRedisSentinelConnectionFactory):
    """A user's own Sentinel factory, not built on this app's."""
