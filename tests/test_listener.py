"""The probe listener (``django_connhealth.listener``), in this process, against real redis-servers.

Every answer goes over a real socket to the listener's own thread; the
timings are bounds the probes must keep whatever Redis does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from typing import TYPE_CHECKING

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_connhealth import defaults, listener
from django_connhealth.listener import ProbeListener, bind
from django_connhealth.middleware import health_paths
from tests.helpers import (
    BOUND,
    CHECK_TIMEOUT,
    FAIL_DOC,
    HEALTH_JSON,
    TOKEN,
    ask,
    health,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")

PASS = {"status": "pass"}
EVERY_PATH = ["/live", "/ready", "/health/live", "/health/ready", "/health/", "/health", "/"]


@contextlib.contextmanager
def listening() -> Iterator[tuple[str, int]]:
    """A listener on a free loopback port, with the URLconf's health paths; stopped after."""
    paths = health_paths()
    probe = ProbeListener(bind("127.0.0.1", 0), paths)
    probe.start()
    try:
        yield probe.address
    finally:
        probe.stop()


def raw(address: tuple[str, int], data: bytes) -> bytes:
    """What the listener answers to ``data``, read until it closes the connection."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_every_path_answers_like_the_views(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url), listening() as address:
        for path in EVERY_PATH:
            status, headers, body, _ = ask(address, path)
            assert (status, json.loads(body)) == (200, PASS), path
            assert headers["Content-Type"] == HEALTH_JSON
            assert headers["Cache-Control"] == "no-store"
            assert headers["Content-Length"] == str(len(body))
        status, headers, body, _ = ask(address, "/health/ready", "HEAD")
        assert (status, body, headers["Content-Length"]) == (200, b"", "18")
        status, headers, body, _ = ask(address, "/health/ready", "POST")
        assert (status, headers["Allow"], body) == (405, "GET, HEAD", b"")
        assert ask(address, "/nope")[0] == 404
        assert ask(address, "/ready?verbose=1")[0] == 200  # a query string is no other path


def test_detail_only_for_the_token(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, CONNHEALTH_TOKEN=TOKEN), listening() as address:
        _, _, body, _ = ask(address, "/ready", Authorization=f"Bearer {TOKEN}")
        document = json.loads(body)
        [check] = document["checks"]["redis.default:responseTime"]
        assert check["componentId"] == fresh_redis.url
        assert check["status"] == "pass"
        for wrong in ("Bearer nope", f"Basic {TOKEN}", ""):
            assert json.loads(ask(address, "/ready", Authorization=wrong)[2]) == PASS


def test_keeps_the_connection_for_the_next_probe(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url), listening() as address:
        connection = http.client.HTTPConnection(*address, timeout=10)
        try:
            for path in ("/live", "/ready", "/nope", "/live"):
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                assert response.getheader("Connection") == "keep-alive"
            assert connection.sock is not None  # one connection served them all
        finally:
            connection.close()
        answer = raw(address, b"GET /live HTTP/1.0\r\n\r\n")  # HTTP/1.0: closed after
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in answer


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET /live\r\n\r\n", 400),
        (b"GET /live SPDY/3\r\n\r\n", 400),
        (b"GET /live HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /live HTTP/1.1\r\nX-Big: " + b"x" * defaults.PROBE_HEAD_LIMIT + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_a_4xx(
    request_head: bytes, status: int, fresh_redis: RedisServer
) -> None:
    with health(fresh_redis.url), listening() as address:
        answer = raw(address, request_head)
        status_line = f"HTTP/1.1 {status} {listener.REASONS[status]}".encode()
        assert answer.split(b"\r\n", 1)[0] == status_line
        assert b"Connection: close\r\n" in answer
        assert ask(address, "/live")[0] == 200  # and it goes on serving


def test_an_idle_connection_is_closed_without_a_word(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "PROBE_HEAD_SECONDS", 0.2)
    with health(fresh_redis.url), listening() as address:
        assert raw(address, b"") == b""  # nothing asked, nothing said: closed
        answer = raw(address, b"GET /live HTTP/1.1\r\n\r\n")  # kept alive, then idle
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"408" not in answer


def test_a_request_with_a_body_closes_its_connection(fresh_redis: RedisServer) -> None:
    """The body is never read: it must not be taken for the next request."""
    with health(fresh_redis.url), listening() as address:
        answer = raw(
            address,
            b"POST /live HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET /live HTTP/1.1\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert answer.count(b"HTTP/1.1 ") == 1
        assert b"Connection: close\r\n" in answer


def test_a_client_that_never_reads_holds_nothing(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined probes from a client that reads no answer: dropped, and stop() returns."""
    monkeypatch.setattr(defaults, "PROBE_HEAD_SECONDS", 0.3)
    with health(fresh_redis.url), listening() as address:
        greedy = socket.create_connection(address, timeout=10)
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            request = b"GET /live HTTP/1.1\r\n\r\n"
            with contextlib.suppress(OSError):  # reset once the listener gives up on it
                for _ in range(200_000):
                    greedy.sendall(request * 100)
            assert ask(address, "/live")[0] == 200  # the others are served meanwhile
            started = time.monotonic()
        finally:
            greedy.close()
    assert time.monotonic() - started < 5  # stop() did not wait on it


def test_a_probe_that_never_finishes_its_request_is_timed_out(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "PROBE_HEAD_SECONDS", 0.2)
    with health(fresh_redis.url), listening() as address:
        answer = raw(address, b"GET /live HTTP/1.1\r\n")
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        # one that hangs up half-way gets nothing, and breaks nothing
        raw(address, b"GET /li")
        assert ask(address, "/live")[0] == 200


def test_misconfigured_setting_fails_with_its_name_for_the_token(fresh_redis: RedisServer) -> None:
    misconfigured = health(fresh_redis.url, CONNHEALTH_CHECK_TIMEOUT="soon", CONNHEALTH_TOKEN=TOKEN)
    with misconfigured, listening() as address:
        status, _, body, _ = ask(address, "/ready")
        assert status == 503
        assert json.loads(body) == {
            "status": "fail",
            "checks": {"connhealth:configuration": [{"status": "fail"}]},
        }
        _, _, body, _ = ask(address, "/ready", Authorization=f"Bearer {TOKEN}")
        [check] = json.loads(body)["checks"]["connhealth:configuration"]
        assert check["output"].startswith("CONNHEALTH_CHECK_TIMEOUT='soon' is not valid")
        assert ask(address, "/live")[0] == 200  # liveness reads no readiness setting


def test_stopped_redis_fails_ready_in_time_while_live_answers(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url), listening() as address:
        assert ask(address, "/ready")[0] == 200  # a pooled connection exists
        fresh_redis.pause()
        try:
            status, _, body, elapsed = ask(address, "/ready")
            assert (status, json.loads(body)) == (503, FAIL_DOC)
            assert elapsed < BOUND, elapsed
            status, _, _, elapsed = ask(address, "/live")
            assert status == 200
            assert elapsed < 0.5, elapsed
        finally:
            fresh_redis.resume()
        wait_for(lambda: ask(address, "/ready")[0] == 200, BOUND + CHECK_TIMEOUT, "recovery")


def test_bind_errors_name_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: the port is not shared
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ImproperlyConfigured) as raised:
            bind("127.0.0.1", port)
    assert str(raised.value).startswith(f"CONNHEALTH_PROBE_PORT={port} cannot be bound on ")
    assert "choose a port no other program listens on" in str(raised.value)
    with pytest.raises(ImproperlyConfigured) as raised:
        bind("no-such-host.invalid", 8080)
    assert str(raised.value).startswith("CONNHEALTH_PROBE_HOST='no-such-host.invalid' is not an")


def test_workers_share_the_port() -> None:
    """Two listeners bind one port (SO_REUSEPORT), as every worker of a server does."""
    first = bind("127.0.0.1", 0)
    second = bind("127.0.0.1", first.getsockname()[1])
    first.close()
    second.close()


def test_stop_closes_the_port(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url), listening() as address:
        assert ask(address, "/live")[0] == 200
        with socket.create_connection(address, timeout=10):  # a connection left open
            pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=10).close()


def test_answers_under_override_settings_of_the_caller(fresh_redis: RedisServer) -> None:
    """Settings are read when each probe comes, in the listener's thread."""
    with health(fresh_redis.url), listening() as address:
        with override_settings(CONNHEALTH_WATCHDOG_SECONDS="never"):
            assert ask(address, "/live")[0] == 503
        assert ask(address, "/live")[0] == 200
