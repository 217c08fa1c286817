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
import functools
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from django_connhealth.redact import redact_url
from testproject.stopper import Stopped, Stopper, foreground
from testproject.supervisor import HOST, Child, Children, NotReady, free_port
from testproject.traffic import get, print_pools, send_traffic, worker_pools

if TYPE_CHECKING:
    from collections.abc import Sequence

# Where this package was imported from, links kept: under tox the directory of links
# tests/import_root.py makes, so gunicorn imports django_connhealth from the wheel.
ROOT = Path(__file__).absolute().parent.parent
#: Seconds to wait for redis-server, then gunicorn, to answer (a loaded CI box is slow).
READY_TIMEOUT = 30.0
#: gunicorn's --graceful-timeout, and how much longer the demo waits before SIGKILL.
GRACEFUL_TIMEOUT = 10
STOP_TIMEOUT = GRACEFUL_TIMEOUT + 5.0


class DemoError(Exception):
    """Something the user can fix: printed as one message, without a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Servers:
    """The processes the demo started, stopped newest first.

    They stay in the demo's process group: Ctrl-C at a terminal reaches each of
    them, so they stop even when the demo is killed before it has stopped them
    (a supervisor may answer Ctrl-C with SIGKILL).
    """

    def __init__(self, stopper: Stopper) -> None:
        self._stopper = stopper
        self._children = Children()

    def start(self, name: str, cmd: Sequence[str], **kwargs: object) -> Child:
        with self._stopper.deferred():
            return self._children.start(cmd, name=name, own_group=False, **kwargs)

    def stop_all(self) -> None:
        self._children.stop_all(STOP_TIMEOUT, report=_report_stopped)


def _report_stopped(child: Child, killed: bool) -> None:
    """gunicorn's workers stop with their master; killed, it leaves them to notice
    that their parent changed, which they check every second."""
    if killed:
        print(f"{child.name} (pid {child.pid}) did not stop within {STOP_TIMEOUT:g} s: killed")
    print(f"{child.name} (pid {child.pid}) stopped")


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


def start_redis(servers: Servers, workdir: Path) -> tuple[str, int]:
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
        child = servers.start("redis-server", cmd, log=log, append=True)
        try:
            child.wait_until(
                functools.partial(_redis_answers, port), READY_TIMEOUT, "answering PING"
            )
            return f"redis://{HOST}:{port}/0", child.pid
        except NotReady as error:
            servers.stop_all()
            if "Address already in use" not in str(error):
                raise DemoError(str(error)) from None
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
    servers: Servers, redis_url: str, workdir: Path, workers: int, threads: int
) -> tuple[str, Child]:
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
    master = servers.start("gunicorn", cmd, cwd=ROOT, env=env)
    base = f"http://{HOST}:{port}"
    try:
        master.wait_until(
            lambda: get(f"{base}/ok")[0] == 200, READY_TIMEOUT, f"answering {base}/ok"
        )
    except NotReady as error:
        raise DemoError(f"{error} Its log is above.") from None
    return base, master


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


def run(args: argparse.Namespace, servers: Servers, workdir: Path) -> None:
    workers = env_count("DEMO_WORKERS", 2)
    threads = env_count("DEMO_THREADS", 4)
    requests = env_count("DEMO_REQUESTS", 300)
    clients = env_count("DEMO_CLIENTS", 8)

    redis_url = os.environ.get("REDIS_URL", "").strip()
    if redis_url:
        check_redis(redis_url)
        print(f"redis          REDIS_URL={redact_url(redis_url)} (yours, left running)")
    else:
        redis_url, redis_pid = start_redis(servers, workdir)
        print(f"redis-server   pid {redis_pid}   {redis_url} (throwaway, stopped on exit)")

    base, master = start_gunicorn(servers, redis_url, workdir, workers, threads)
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
        if master.exited():
            raise DemoError(f"gunicorn exited with status {master.proc.wait()} (its log is above).")
        time.sleep(min(remaining, 0.5))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # shown as it happens, even in a pipe
    stopper = Stopper()
    servers = Servers(stopper)
    workdir = tempfile.TemporaryDirectory(prefix="connhealth-demo-")
    try:
        # The terminal's Ctrl-C for the demo and its servers alone, until they have stopped.
        with foreground():
            try:
                stopper.install()
                run(args, servers, Path(workdir.name))
            except Stopped as stop:
                print(f"\n{stop.name}: stopping.")
            finally:
                stopper.stopping()
                servers.stop_all()
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return error.status
    finally:
        workdir.cleanup()
        stopper.uninstall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
