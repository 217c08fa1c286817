"""The health endpoints of testproject under real servers, against a real redis-server.

gunicorn (gthread, two workers) serves the WSGI stack and uvicorn the ASGI one
(where ProbeMiddleware runs the async view). Redis is stopped, resumed, killed and
restarted under them; every readiness answer is timed from the client, and the
servers must ride it out without restarting a worker.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from testproject.supervisor import NotReady, free_port, start
from tests.helpers import BOOTED, CHECK_TIMEOUT
from tests.servers import child_env

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from tests.redis_server import RedisServer

pytestmark = pytest.mark.gunicorn

ROOT = Path(__file__).resolve().parent.parent
#: Seconds for a server to boot and answer (a loaded two-core machine is slow).
READY_TIMEOUT = 30.0
#: Client-side socket timeout of every request.
REQUEST_TIMEOUT = 5.0
#: CONNHEALTH_CHECK_TIMEOUT's default, plus the margin a probe may take on top.
BOUND = 1.0 + 0.5


@dataclass
class Answer:
    status: int | str
    body: bytes
    elapsed: float
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(url: str, method: str = "GET", host: str | None = None) -> Answer:
    """One request with urllib: the status (or the error's name), body and time taken."""
    request = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            content = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            content, status, headers = exc.read(), exc.code, dict(exc.headers)
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Answer(type(reason).__name__, b"", time.monotonic() - started)
    return Answer(status, content, time.monotonic() - started, headers)


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def booted(self) -> list[int]:
        """Worker pids gunicorn reported booting (none for uvicorn)."""
        return [int(pid) for pid in BOOTED.findall(self.log())]

    def get(self, path: str, method: str = "GET", host: str | None = None) -> Answer:
        return fetch(self.base + path, method, host)

    def worker_pids(self) -> set[int]:
        """Pids that answer /pool (which worker accepts is up to the kernel)."""
        with ThreadPoolExecutor(8, thread_name_prefix="pool-client") as executor:
            answers = list(executor.map(lambda _: self.get("/pool"), range(24)))
        assert all(answer.status == 200 for answer in answers), [a.status for a in answers]
        return {answer.json()["pid"] for answer in answers}


def command(name: str, port: int) -> tuple[list[str], int]:
    """The server's command line and how many workers it boots."""
    if name == "gunicorn-gthread":
        from testproject.demo import gunicorn_no_control_socket

        args = ["-k", "gthread", "-w", "2", "--threads", "4", *gunicorn_no_control_socket()]
        bind = ["-b", f"127.0.0.1:{port}", "testproject.wsgi"]
        return [sys.executable, "-m", "gunicorn", *args, *bind], 2
    if name == "gunicorn-asgi":  # gunicorn's own ASGI worker, where gunicorn has one
        from gunicorn.workers import SUPPORTED_WORKERS

        from testproject.demo import gunicorn_no_control_socket

        if "asgi" not in SUPPORTED_WORKERS:
            pytest.skip("this gunicorn has no ASGI worker (-k asgi)")

        args = ["-k", "asgi", "-w", "1", *gunicorn_no_control_socket()]
        bind = ["-b", f"127.0.0.1:{port}", "testproject.asgi:application"]
        return [sys.executable, "-m", "gunicorn", *args, *bind], 1
    uvicorn = ["-m", "uvicorn", "testproject.asgi:application", "--workers", "1"]
    return [sys.executable, *uvicorn, "--host", "127.0.0.1", "--port", str(port)], 0


@contextlib.contextmanager
def serve(name: str, redis_url: str, tmp_path: Path) -> Iterator[Server]:
    """testproject under ``name`` with REDIS_URL, once it answers /health/live."""
    env = child_env(REDIS_URL=redis_url, TESTPROJECT_VAR_DIR=str(tmp_path))
    port = free_port()
    cmd, workers = command(name, port)
    log_path = tmp_path / f"{name}.log"
    child = start(cmd, name=name, log=log_path, env=env, cwd=ROOT)
    server = Server(name, f"http://127.0.0.1:{port}", child.proc, log_path)
    try:
        child.wait_until(
            lambda: len(server.booted()) >= workers and server.get("/health/live").status == 200,
            READY_TIMEOUT,
            f"booting {workers} workers and answering /health/live",
        )
    except NotReady as error:
        child.stop()
        pytest.fail(str(error))
    try:
        yield server
    finally:
        child.stop()


def assert_ready(server: Server, status: int, document: dict[str, Any]) -> Answer:
    answer = server.get("/health/ready")
    assert answer.status == status, (answer, server.log())
    assert answer.headers["Content-Type"] == "application/health+json"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json() == document
    assert answer.elapsed < BOUND, answer.elapsed
    return answer


def await_recovery() -> None:
    """Wait out the failures seen: each stands in its worker for one check timeout."""
    time.sleep(CHECK_TIMEOUT)


def assert_live(server: Server) -> None:
    answer = server.get("/health/live")
    assert answer.status == 200, answer
    assert answer.json() == {"status": "pass"}
    assert answer.elapsed < BOUND, answer.elapsed


POD_IP = "10.1.2.3:8000"
PASS = {"status": "pass"}
FAIL = {"status": "fail", "checks": {"redis.default:responseTime": [{"status": "fail"}]}}


@pytest.mark.parametrize("name", ["gunicorn-gthread", "uvicorn", "gunicorn-asgi"])
def test_ready_follows_redis_without_restarting_the_server(
    name: str, fresh_redis: RedisServer, tmp_path: Path
) -> None:
    with serve(name, fresh_redis.url, tmp_path) as server:
        # gunicorn names its workers in its log; uvicorn --workers 1 serves in-process.
        workers = set(server.booted()) or {server.proc.pid}
        assert server.worker_pids() <= workers

        for _ in range(3):
            assert_ready(server, 200, PASS)
        assert_live(server)
        head = server.get("/health/ready", method="HEAD")
        assert (head.status, head.body) == (200, b"")
        assert server.get("/health/ready", method="POST").status == 405
        # The kubelet's Host (the pod IP) is not in ALLOWED_HOSTS: probes still get
        # their answer, the application does not.
        assert server.get("/health/ready", host=POD_IP).status == 200
        assert server.get("/health/live", host=POD_IP).status == 200
        assert server.get("/ok", host=POD_IP).status == 400

        fresh_redis.pause()
        try:
            for _ in range(3):  # more than one worker gets some
                assert_ready(server, 503, FAIL)
                assert_live(server)
        finally:
            fresh_redis.resume()
        await_recovery()
        for _ in range(3):
            assert_ready(server, 200, PASS)

        fresh_redis.kill()
        for _ in range(3):
            assert_ready(server, 503, FAIL)
            assert_live(server)

        fresh_redis.restart()
        await_recovery()
        for _ in range(3):
            assert_ready(server, 200, PASS)

        # The same processes answered throughout: nothing restarted to recover.
        assert server.proc.poll() is None
        assert (set(server.booted()) or {server.proc.pid}) == workers
        assert server.worker_pids() <= workers
        for pid in workers:
            os.kill(pid, 0)  # still running
        assert "Traceback" not in server.log(), server.log()
