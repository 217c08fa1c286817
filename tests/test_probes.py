"""Readiness probes (``django_connhealth.probes``) through Django's test client, against real
redis-servers.

Every readiness answer is timed with ``time.monotonic``: a probe must answer within
``CONNHEALTH_CHECK_TIMEOUT`` plus a small margin whatever Redis does (dies, stops,
pauses its clients, or was never Redis at all).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import caches
from django.test import Client, override_settings

from django_connhealth import probes, sized_caches
from django_connhealth.ping import bounded_ping
from django_connhealth.pool import PoolTimeoutError
from testproject.supervisor import read_line, reap
from tests.helpers import (
    BOUND,
    CHECK_TIMEOUT,
    FAIL_DOC,
    READY_PATHS,
    SLOW,
    TOKEN,
    WARN_DOC,
    acquire,
    alone_or_rerun,
    body,
    connhealth_clients,
    health,
    pings,
    pool_of,
    report_from_child,
    timed,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import StartRedis
    from tests.redis_server import RedisServer, SilentListener

pytestmark = pytest.mark.usefixtures("isolated_probes")


def test_killed_redis_fails_ready_in_time_and_recovers(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200

        fresh_redis.kill()
        for path in READY_PATHS:
            response, elapsed = timed(client.get, path)
            assert response.status_code == 503
            assert body(response) == FAIL_DOC
            assert elapsed < BOUND, elapsed
        # Liveness never touches Redis: a Redis outage must not restart the process.
        response, elapsed = timed(client.get, "/health/live")
        assert response.status_code == 200
        assert body(response) == {"status": "pass"}
        assert elapsed < 0.5
        head = client.head("/health/ready")
        assert head.status_code == 503
        assert head.content == b""

        fresh_redis.restart()
        # the failure stands for one check timeout after it was seen
        wait_for(lambda: client.get("/health/ready").status_code == 200, BOUND, "recovery")
        assert body(client.get("/health/ready")) == {"status": "pass"}


@contextlib.contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """SIGSTOP: the kernel accepts connections, the server answers nothing."""
    server.pause()
    try:
        yield
    finally:
        server.resume()


@contextlib.contextmanager
def clients_paused(server: RedisServer) -> Iterator[None]:
    """``CLIENT PAUSE ... ALL``: the server holds every client's commands.

    Redis 7.0 holds ``CLIENT UNPAUSE`` too under ``ALL`` (it runs when the
    pause ends), so the pause is short and the unpause waits it out.
    """
    pause_ms = 3000
    with server.client(socket_timeout=pause_ms / 1000 + 3) as helper:
        helper.client_pause(pause_ms, all=True)
        try:
            yield
        finally:
            helper.client_unpause()


@pytest.mark.parametrize("how", ["sigstop", "client-pause"])
def test_unresponsive_redis_fails_ready_in_time(how: str, fresh_redis: RedisServer) -> None:
    outage = stopped if how == "sigstop" else clients_paused
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200  # a pooled connection exists

        with outage(fresh_redis):
            response, elapsed = timed(client.get, "/health/ready")
            assert response.status_code == 503
            assert body(response) == FAIL_DOC
            assert elapsed < BOUND, elapsed
            response, elapsed = timed(client.get, "/health/live")
            assert response.status_code == 200
            assert elapsed < 0.5

        # The failure is the answer for a check timeout after it was seen; then a new ping.
        wait_for(lambda: client.get("/health/ready").status_code == 200, BOUND, "recovery")


def test_probe_that_joins_a_check_answers_by_that_checks_deadline(
    fresh_redis: RedisServer,
) -> None:
    """A probe arriving while a ping waits on a stopped server gives up with that ping.

    Waiting out its own timeout instead would hold a request thread 0.6 s longer
    here, and a storm of probes would each hold one for a whole timeout.
    """
    with health(fresh_redis.url):
        assert Client().get("/health/ready").status_code == 200  # a pooled connection exists
        first: dict[str, Any] = {}

        def probe_first() -> None:
            first["response"] = Client().get("/health/ready")
            first["ended"] = time.monotonic()

        with stopped(fresh_redis):
            thread = threading.Thread(target=probe_first)
            thread.start()
            time.sleep(CHECK_TIMEOUT * 0.6)
            response, elapsed = timed(Client().get, "/health/ready")
            ended = time.monotonic()
            thread.join()
        assert first["response"].status_code == response.status_code == 503
        assert body(response) == FAIL_DOC
        # it answered when the check it joined did, well before its own timeout ran out
        assert elapsed < CHECK_TIMEOUT * 0.6
        assert ended - first["ended"] < CHECK_TIMEOUT * 0.3


def test_failure_seen_within_a_timeout_is_answered_at_once(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        with stopped(fresh_redis):
            response, elapsed = timed(client.get, "/health/ready")
            assert response.status_code == 503
            assert elapsed >= CHECK_TIMEOUT * 0.9  # it waited for the stopped server
            for _ in range(20):
                response, elapsed = timed(client.get, "/health/ready")
                assert response.status_code == 503
                assert body(response) == FAIL_DOC
                assert elapsed < CHECK_TIMEOUT / 4  # the failure seen, no new wait
            with override_settings(CONNHEALTH_TOKEN=TOKEN):
                detail = client.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        wait_for(lambda: client.get("/health/ready").status_code == 200, BOUND, "recovery")
    # the detail is the failure seen, as it was seen
    [check] = body(detail)["checks"]["redis.default:responseTime"]
    assert check["status"] == "fail"
    assert "Timeout" in check["output"] or "no answer within" in check["output"], check


def test_listener_that_never_answers_fails_ready_in_time(silent_listener: SilentListener) -> None:
    with health(silent_listener.url), override_settings(CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        response, elapsed = timed(client.get, "/health/ready")
        assert response.status_code == 503
        assert body(response) == FAIL_DOC
        assert elapsed < BOUND, elapsed

        response, elapsed = timed(client.get, "/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 503
        assert elapsed < BOUND, elapsed
        [check] = body(response)["checks"]["redis.default:responseTime"]
        assert check["status"] == "fail"
        assert check["componentId"] == silent_listener.url
    assert silent_listener.connection_count >= 1  # it was reached, and said nothing


def test_saturated_pool_warns_in_time(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, pool={"max_connections": 2}):
        client = Client()
        assert body(client.get("/health/ready")) == {"status": "pass"}
        pool = pool_of(caches["default"])
        held = [acquire(pool), acquire(pool)]
        try:
            response, elapsed = timed(client.get, "/health/ready")
            assert response.status_code == 200
            assert body(response) == WARN_DOC
            assert elapsed < BOUND, elapsed
            with override_settings(CONNHEALTH_TOKEN=TOKEN):
                detail = body(client.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
            [check] = detail["checks"]["redis.default:responseTime"]
            assert check["status"] == "warn"
            assert "no free connection" in check["output"]
            [connections] = detail["checks"]["redis.default:connections"]
            assert connections["in_use"] == 2
            assert connections["max_connections"] == 2
        finally:
            for connection in held:
                pool.release(connection)
        # The probe gave up at its own deadline: that is no wait timeout of the pool.
        assert pool.figures().timeouts == 0
        assert body(client.get("/health/ready")) == {"status": "pass"}


def test_wait_timeout_in_the_app_warns_at_the_next_probe(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, pool={"max_connections": 2, "timeout": 0.2}):
        client = Client()
        assert body(client.get("/health/ready")) == {"status": "pass"}
        pool = pool_of(caches["default"])
        held = [acquire(pool), acquire(pool)]
        try:
            with pytest.raises(PoolTimeoutError):
                caches["default"].get("some-key")
        finally:
            for connection in held:
                pool.release(connection)
        assert pool.figures().timeouts == 1

        response = client.get("/health/ready")
        assert response.status_code == 200
        assert body(response) == WARN_DOC
        assert body(client.get("/health/ready")) == {"status": "pass"}


def test_probes_reuse_pooled_connections(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        before = connhealth_clients(fresh_redis)
        assert before >= 1
        for _ in range(100):
            assert client.get("/health/ready").status_code == 200
        assert connhealth_clients(fresh_redis) == before


def test_concurrent_probes_share_one_ping(fresh_redis: RedisServer) -> None:
    """Probes arriving while a PING is under way wait for its answer rather than send their own."""
    probes = 8
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200  # an idle pooled connection
        before = pings(fresh_redis)
        started = threading.Barrier(probes + 1)
        statuses: list[int] = []

        def probe() -> None:
            started.wait()
            statuses.append(Client().get("/health/ready").status_code)

        threads = [threading.Thread(target=probe) for _ in range(probes)]
        with fresh_redis.client() as helper:
            helper.client_pause(400, all=True)  # ends by itself, well within the timeout
            for thread in threads:
                thread.start()
            started.wait()
            for thread in threads:
                thread.join()
        assert statuses == [200] * probes
        assert pings(fresh_redis) == before + 1


def _probe_after(go_fd: int) -> dict[str, Any]:
    """The child's readiness probe, once the parent says the server answers again."""
    os.read(go_fd, 1)
    response, elapsed = timed(Client().get, "/health/ready")
    return {"status": response.status_code, "document": body(response), "elapsed": elapsed}


def test_check_under_way_in_another_process_is_not_joined(
    fresh_redis: RedisServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forked child inherits the parent's record of a check under way, never its thread.

    The parent's probe pings in the calling thread (one pool with an idle
    connection) a server stopped with SIGSTOP; a timer forks while that ping
    waits for its PONG. The child never goes back to that ping, so there it never
    ends: the child's own probe, once the server answers again, must ping afresh
    and pass in time rather than wait for it.
    """
    if not alone_or_rerun(request):
        return
    parent = os.getpid()
    state: dict[str, Any] = {"pinging": False, "child": None, "threads": None}
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()

    def ping_then_fork(*args: Any) -> None:
        """probes.bounded_ping, with a fork due while it waits for the stopped server."""
        if os.getpid() == parent and state["child"] is None:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
        state["pinging"] = True
        try:
            bounded_ping(*args)
        finally:
            state["pinging"] = False

    def fork_now(signum: int, frame: object) -> None:
        if os.getpid() != parent or state["child"] is not None or not state["pinging"]:
            return
        # A single thread, or fork() warns (an error here); the ping runs in this one.
        state["threads"] = threading.active_count()
        if state["threads"] != 1:
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            report_from_child(report_w, lambda: _probe_after(go_r))
        state["child"] = pid
        fresh_redis.resume()
        os.write(go_w, b"x")

    monkeypatch.setattr(probes, "bounded_ping", ping_then_fork)
    previous = signal.signal(signal.SIGALRM, fork_now)
    try:
        with health(fresh_redis.url):
            client = Client()
            # Open the pool's connection without a probe, which would start a thread.
            caches["default"].set("warm", 1)
            fresh_redis.pause()
            try:
                response = client.get("/health/ready")
            finally:
                fresh_redis.resume()
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        os.close(report_w)
        os.close(go_r)
        os.close(go_w)
        try:
            pid = state["child"]
            assert pid is not None, f"no fork during the ping ({state['threads']} threads)"
            try:
                report = json.loads(read_line(report_r, SLOW))
            finally:
                exit_code = reap(pid, SLOW)
        finally:
            os.close(report_r)

    assert "error" not in report, report.get("error")
    assert exit_code == 0
    # The parent's ping was answered once the server went on.
    assert response.status_code == 200, response.content
    # The child pinged on its own: it never waited for the ping it inherited.
    assert report["status"] == 200, report
    assert report["document"] == {"status": "pass"}
    assert report["elapsed"] < CHECK_TIMEOUT


def test_cache_seconds_reuses_the_answer(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, CONNHEALTH_CACHE_SECONDS=5):
        client = Client()
        # Open the pool's connection first: redis-py sends a health-check PING with
        # the first command on a new connection (health_check_interval).
        caches["default"].set("warm", 1)
        before = pings(fresh_redis)
        for _ in range(50):
            assert client.get("/health/ready").status_code == 200
        assert pings(fresh_redis) - before == 1

    with health(fresh_redis.url, CONNHEALTH_CACHE_SECONDS=0):
        client = Client()
        before = pings(fresh_redis)
        for _ in range(50):
            assert client.get("/health/ready").status_code == 200
        assert pings(fresh_redis) - before == 50


@pytest.mark.parametrize("refused", ["client|setname", "info", "client|list"])
def test_user_refused_anything_but_ping_is_ready(start_redis: StartRedis, refused: str) -> None:
    """Readiness asks only for PING: an ACL that refuses the rest passes, and the app works."""
    server = start_redis()
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", f"-{refused}"
        )
    with health(f"redis://app:pw@127.0.0.1:{server.port}/0", CONNHEALTH_TOKEN=TOKEN):
        http = Client()
        for _ in range(3):  # a fresh connection, then the pooled one
            response = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            assert response.status_code == 200, response.content
            assert body(response)["status"] == "pass"
        caches["default"].set("k", "v")
        assert caches["default"].get("k") == "v"


def test_unsized_redis_alias_is_pinged_through_its_own_pool(fresh_redis: RedisServer) -> None:
    """Readiness checks every Redis alias, sized or not: an unsized one down is a fail."""
    unsized = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": fresh_redis.url}
    with override_settings(
        CACHES={"default": unsized},
        ROOT_URLCONF="tests.health_urls",
        CONNHEALTH_TOKEN=TOKEN,
    ):
        http = Client()
        response = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        [check] = body(response)["checks"]["redis.default:responseTime"]
        assert check["status"] == "pass"
        # its own pool: the one the cache uses, not one readiness built for itself
        caches["default"].set("k", "v")
        [target] = probes.targets.get()
        backend: Any = caches["default"]
        assert target.pool is backend.client.get_client().connection_pool
        fresh_redis.kill()
        down, elapsed = timed(http.get, "/health/ready")
        assert (down.status_code, body(down)) == (503, FAIL_DOC)
        assert elapsed < BOUND


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            {"BACKEND": "django_valkey.cache.ValkeyCache", "LOCATION": "valkey://127.0.0.1:1/0"},
            "not checked: the cache backend 'django_valkey.cache.ValkeyCache' is not supported yet",
        ),
    ],
    ids=["valkey"],
)
def test_redis_alias_readiness_cannot_check_is_a_warning_never_a_pass(
    config: dict[str, Any], reason: str
) -> None:
    with override_settings(
        CACHES={"default": config}, ROOT_URLCONF="tests.health_urls", CONNHEALTH_TOKEN=TOKEN
    ):
        http = Client()
        anonymous = http.get("/health/ready")
        assert (anonymous.status_code, body(anonymous)) == (200, WARN_DOC)
        detailed = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        [check] = body(detailed)["checks"]["redis.default:responseTime"]
        assert check["status"] == "warn"
        assert check["output"] == reason
        assert check["componentId"] == config["LOCATION"].split(",")[0]


def test_redis_backed_alias_of_another_backend_is_a_warning() -> None:
    """A subclass of a Redis backend this app has no adapter for is never a silent pass."""
    config = {"BACKEND": "tests.helpers.OtherRedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(
        CACHES={"default": config}, ROOT_URLCONF="tests.health_urls", CONNHEALTH_TOKEN=TOKEN
    ):
        detailed = Client().get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert detailed.status_code == 200
    [check] = body(detailed)["checks"]["redis.default:responseTime"]
    assert check["status"] == "warn"
    assert check["output"] == (
        "not checked: the cache backend 'tests.helpers.OtherRedisCache' is not supported yet"
    )


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({}, "SENTINELS must be provided as a list of (host, port)."),
        ({"SENTINELS": ["127.0.0.1:26379"]}, "too many values to unpack"),
    ],
    ids=["no sentinels", "sentinels as strings"],
)
def test_alias_whose_pools_cannot_be_built_fails_with_the_reason(
    options: dict[str, Any], reason: str
) -> None:
    """A Sentinel alias without valid sentinels: every use of the cache fails, and readiness."""
    caches = sized_caches(
        {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://mymaster/0",
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.SentinelClient", **options},
            }
        },
        environ={},
    )
    with override_settings(CACHES=caches, ROOT_URLCONF="tests.health_urls", CONNHEALTH_TOKEN=TOKEN):
        http = Client()
        anonymous = http.get("/health/ready")
        assert (anonymous.status_code, body(anonymous)) == (503, FAIL_DOC)
        detailed = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    [check] = body(detailed)["checks"]["redis.default:responseTime"]
    assert check["output"].startswith("its pools cannot be built: ")
    assert reason in check["output"]
