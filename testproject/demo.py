"""Run the demo project under gunicorn against a throwaway redis-server.

From the repository root::

    python -m testproject.demo [--duration SECONDS]

Starts ``redis-server`` on a free loopback port (unless ``REDIS_URL`` is set),
runs ``testproject`` under ``gunicorn --preload -k gthread``, sends it some
traffic, prints its URLs and each worker's pool figures, then serves until
Ctrl-C (or SIGTERM, or ``--duration``) and stops everything it started.

Environment: ``REDIS_URL`` (use this Redis instead; the demo writes cache keys
``:1:testproject:*`` and the app its ``connhealth:*`` records), ``DEMO_WORKERS`` (2),
``DEMO_THREADS`` (4), ``DEMO_REQUESTS`` (300), ``DEMO_CLIENTS`` (8).
Exit status: 0 when stopped as asked, 1 when a server failed, 2 for a
missing ``redis-server`` or a malformed setting.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from django_connhealth.redact import redact_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType

# Where this package was imported from, links kept: under tox the directory of links
# tests/import_root.py makes, so gunicorn imports django_connhealth from the wheel.
ROOT = Path(__file__).absolute().parent.parent
HOST = "127.0.0.1"
#: Seconds to wait for redis-server, then gunicorn, to answer (a loaded CI box is slow).
READY_TIMEOUT = 30.0
#: gunicorn's --graceful-timeout, and how much longer the demo waits before SIGKILL.
GRACEFUL_TIMEOUT = 10
STOP_TIMEOUT = GRACEFUL_TIMEOUT + 5.0
#: Seconds one demo request may take.
REQUEST_TIMEOUT = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoError(Exception):
    """Something the user can fix: printed as one message, without a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Stopped(BaseException):
    """Raised in the main thread by a stop signal (like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Stopper:
    """Turns SIGINT, SIGTERM and SIGHUP into ``Stopped``, except where that would leak.

    Inside ``deferred()`` (while a child is being started) a signal is held
    until the block ends; once ``stopping()`` is called (cleanup) it is ignored,
    so a second Ctrl-C cannot cut the cleanup short.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._stopping = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self.signum = signum
        if not self._deferring:
            raise Stopped(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signum is not None:
            raise Stopped(self.signum)

    def stopping(self) -> None:
        self._stopping = True


class Children:
    """The processes the demo started, stopped in reverse order.

    They stay in the demo's process group: Ctrl-C at a terminal reaches each of
    them, so they stop even when the demo is killed before it has stopped them
    (a supervisor may answer Ctrl-C with SIGKILL).
    """

    def __init__(self, stopper: Stopper) -> None:
        self._stopper = stopper
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._stopper.deferred():
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kwargs)
            self._procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        while self._procs:
            name, proc = self._procs.pop()
            _stop(name, proc)


def _stop(name: str, proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL.

    gunicorn's workers stop with their master; killed, it leaves them to notice
    that their parent changed, which they check every second.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{name} (pid {proc.pid}) did not stop within {STOP_TIMEOUT:g} s: killing it")
            proc.kill()
    proc.wait()
    print(f"{name} (pid {proc.pid}) stopped")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def env_count(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise DemoError(f"{name}={value!r} is not valid: set it to a whole number from 1.", 2)
    return int(value)


# -- redis ----------------------------------------------------------------------------


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(children: Children, workdir: Path) -> tuple[str, int]:
    """A throwaway redis-server on a free loopback port: (URL, pid)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DemoError(
            "redis-server was not found on PATH. Install the Debian package `redis-server` "
            "(sudo apt-get install redis-server), or set REDIS_URL to a Redis you run.",
            2,
        )
    log = workdir / "redis.log"
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        cmd = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(workdir), "--logfile", str(log), "--daemonize", "no"]
        # Errors in the arguments go to stdout, before the log file is open.
        with log.open("ab") as out:
            proc = children.start("redis-server", cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if _redis_answers(port):
                return f"redis://{HOST}:{port}/0", proc.pid
            time.sleep(0.05)
        children.stop_all()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        if "Address already in use" not in tail:
            raise DemoError(f"redis-server did not start. Its log:\n{tail}")
    raise DemoError("redis-server found no free port after 3 attempts.")


def check_redis(url: str) -> None:
    """Fail early, and without the password, when REDIS_URL does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise DemoError(
            f"REDIS_URL={redact_url(url)} does not answer ({type(exc).__name__}).", 2
        ) from None
    finally:
        client.close()
        client.connection_pool.disconnect()


# -- gunicorn --------------------------------------------------------------------------


def start_gunicorn(
    children: Children, redis_url: str, workdir: Path, workers: int, threads: int
) -> tuple[str, subprocess.Popen[bytes]]:
    """testproject under gunicorn on a free loopback port: (base URL, master process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--preload", "-k", "gthread"]
    cmd += ["-w", str(workers), "--threads", str(threads), "-b", f"{HOST}:{port}"]
    cmd += ["--graceful-timeout", str(GRACEFUL_TIMEOUT), *gunicorn_no_control_socket()]
    cmd += ["testproject.wsgi"]
    python_path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": os.pathsep.join(python_path),
        "TESTPROJECT_VAR_DIR": os.environ.get("TESTPROJECT_VAR_DIR") or str(workdir),
        # Publish pool figures often, so the report below has them within seconds.
        "CONNHEALTH_PUBLISH_SECONDS": os.environ.get("CONNHEALTH_PUBLISH_SECONDS") or "1",
    }
    # gunicorn logs to stderr, which it shares with the demo.
    master = children.start("gunicorn", cmd, cwd=ROOT, env=env)
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise DemoError(
                f"gunicorn exited with status {master.returncode} before it answered "
                f"(its log is above)."
            )
        status, _ = get(f"{base}/ok")
        if status == 200:
            return base, master
        time.sleep(0.1)
    raise DemoError(
        f"gunicorn did not answer {base}/ok with 200 within {READY_TIMEOUT:g} s "
        f"(last answer: {status})."
    )


def gunicorn_no_control_socket() -> list[str]:
    """``--no-control-socket`` where gunicorn has it (25.1+).

    gunicorn's control socket has one path per user by default, which two
    servers fight over: neither the demo nor the tests need it.
    """
    try:
        import gunicorn
    except ImportError:
        raise DemoError("gunicorn is not installed: pip install gunicorn", 2) from None
    return ["--no-control-socket"] if gunicorn.version_info >= (25, 1) else []


def get(url: str) -> tuple[int | str, bytes]:
    """GET ``url``: (HTTP status, body), or (error name, b"") when there is no answer."""
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return type(reason).__name__ if isinstance(reason, BaseException) else str(reason), b""


def fan_out(urls: Sequence[str], clients: int) -> list[tuple[int | str, bytes]]:
    """GET every URL, ``clients`` at a time."""
    executor = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="demo-client")
    try:
        return list(executor.map(get, urls))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def print_fleet_report(base: str, redis_url: str, workdir: Path, clients: int) -> None:
    """Run `manage.py connhealth`, as a user would, once every worker has published."""
    time.sleep(1.2)  # one publish interval, then traffic to trigger the next round
    send_traffic(base, clients * 4, clients, quiet=True)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "TESTPROJECT_VAR_DIR": os.environ.get("TESTPROJECT_VAR_DIR") or str(workdir),
    }
    cmd = [sys.executable, "-m", "django", "connhealth", "--settings", "testproject.settings"]
    print("$ python -m django connhealth --settings testproject.settings")
    sys.stdout.flush()
    subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False, timeout=60)


def send_traffic(base: str, requests: int, clients: int, *, quiet: bool = False) -> None:
    paths = ["/work", "/", "/work"]
    urls = [base + paths[i % len(paths)] for i in range(requests)]
    started = time.monotonic()
    results = fan_out(urls, clients)
    elapsed = time.monotonic() - started
    statuses = collections.Counter(status for status, _ in results)
    summary = ", ".join(f"{count} answered {status}" for status, count in statuses.most_common())
    if quiet:
        return
    print(
        f"Traffic: {requests} requests to / and /work from {clients} threads "
        f"in {elapsed:.1f} s: {summary}."
    )


def worker_pools(base: str, workers: int, clients: int) -> dict[int, dict[str, Any]]:
    """The /pool answer of each worker, asking until all ``workers`` have answered."""
    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 10.0
    while len(answers) < workers and time.monotonic() < deadline:
        # Concurrent asks, so that every worker's accept loop gets its turn.
        for status, body in fan_out([f"{base}/pool"] * clients, clients):
            if status == 200:
                answer = json.loads(body)
                answers[answer["pid"]] = answer
    return answers


def print_pools(answers: dict[int, dict[str, Any]], workers: int) -> None:
    if not answers:
        print("No worker answered /pool.")
        return
    first = next(iter(answers.values()))
    concurrency = first["concurrency"]
    sources = concurrency["sources"]
    sizes = {pool["max_connections"] for answer in answers.values() for pool in answer["pools"]}
    print(
        f"Pools, one per worker process, sized for {concurrency['worker_class']}: "
        f"{concurrency['workers']} workers (from {sources['workers']}) "
        f"x {concurrency['threads']} threads (from {sources['threads']})"
    )
    size = ", ".join(map(str, sorted(sizes))) or "?"
    source = first["sources"]["max_connections"]
    if source == "derived":
        threads, headroom = concurrency["threads"], first["headroom"]
        print(f"  max_connections {size} = {threads} threads + headroom {headroom}")
    else:
        print(f"  max_connections {size} (from {source})")
    columns = {
        "max_connections": "max",
        "created": "created",
        "in_use": "in use",
        "idle": "idle",
        "peak_in_use": "peak",
        "waits": "waits",
        "timeouts": "timeouts",
    }
    print(f"  {'worker pid':<10}  {'alias':<10}" + "".join(f"{c:>9}" for c in columns.values()))
    for pid, answer in sorted(answers.items()):
        if not answer["pools"]:
            print(f"  {pid:<10}  (no pool yet: this worker has served no cache request)")
        for pool in answer["pools"]:
            figures = "".join(f"{pool[key]:>9}" for key in columns)
            print(f"  {pid:<10}  {pool['alias']:<10}{figures}")
    print(f"gunicorn workers: pids {', '.join(map(str, sorted(answers)))}")
    if len(answers) < workers:
        print(f"({len(answers)} of {workers} workers answered /pool.)")


# -- the demo -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m testproject.demo",
        description="Run the django-connhealth demo project under gunicorn against Redis.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds of serving (default: run until Ctrl-C)",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration < 0:
        parser.error(f"--duration {args.duration:g}: give a number of seconds, 0 or more")
    return args


def run(args: argparse.Namespace, children: Children, workdir: Path) -> None:
    workers = env_count("DEMO_WORKERS", 2)
    threads = env_count("DEMO_THREADS", 4)
    requests = env_count("DEMO_REQUESTS", 300)
    clients = env_count("DEMO_CLIENTS", 8)

    redis_url = os.environ.get("REDIS_URL", "").strip()
    if redis_url:
        check_redis(redis_url)
        print(f"redis          REDIS_URL={redact_url(redis_url)} (yours, left running)")
    else:
        redis_url, redis_pid = start_redis(children, workdir)
        print(f"redis-server   pid {redis_pid}   {redis_url} (throwaway, stopped on exit)")

    base, master = start_gunicorn(children, redis_url, workdir, workers, threads)
    print(
        f"gunicorn       pid {master.pid}   {base}/ "
        f"(--preload -k gthread, {workers} workers x {threads} threads)"
    )
    print()
    print("Open:")
    print(f"  {base}/       a visit counter kept in the cache")
    print(f"  {base}/work   three cache calls (get, set, get)")
    print(f"  {base}/pool   the Redis pool of the worker that answers (JSON)")
    print(f"  {base}/ok     no cache at all (the floor for benchmarks)")
    print(f"  {base}/health/live    liveness: no I/O")
    print(f"  {base}/health/ready   readiness: a PING through each worker's own pool")
    print()
    send_traffic(base, requests, clients)
    print()
    print_pools(worker_pools(base, workers, clients), workers)
    print()
    print_fleet_report(base, redis_url, workdir, clients)
    print()

    if args.duration is None:
        print("Serving until Ctrl-C.")
        deadline = float("inf")
    else:
        print(f"Serving for {args.duration:g} s (--duration).")
        deadline = time.monotonic() + args.duration
    while (remaining := deadline - time.monotonic()) > 0:
        if master.poll() is not None:
            raise DemoError(f"gunicorn exited with status {master.returncode} (its log is above).")
        time.sleep(min(remaining, 0.5))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # shown as it happens, even in a pipe
    stopper = Stopper()
    children = Children(stopper)
    workdir = tempfile.TemporaryDirectory(prefix="connhealth-demo-")
    try:
        stopper.install()
        run(args, children, Path(workdir.name))
    except Stopped as stop:
        print(f"\n{signal.Signals(stop.signum).name}: stopping.")
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return error.status
    finally:
        stopper.stopping()
        children.stop_all()
        workdir.cleanup()
        stopper.uninstall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
