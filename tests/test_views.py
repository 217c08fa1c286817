"""The health endpoints in process, through Django's test clients, against real redis-servers.

Every readiness answer is timed with ``time.monotonic``: a probe must answer within
``CONNHEALTH_CHECK_TIMEOUT`` plus a small margin whatever Redis does (dies, stops,
pauses its clients, or was never Redis at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import select
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import AsyncClient, Client, override_settings

from django_connhealth import views
from django_connhealth.checks import check_settings
from django_connhealth.ping import Moment
from django_connhealth.pool import PoolTimeoutError, SizedConnectionPool
from django_connhealth.probes import prober, readiness, targets
from django_connhealth.redispy import holds_unread_reply
from tests.helpers import redis_caches

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from django.test.client import _MonkeyPatchedASGIResponse, _MonkeyPatchedWSGIResponse
    from redis.connection import ConnectionPool

    from tests.conftest import RedisDB, StartRedis
    from tests.redis_server import RedisServer, SilentListener

    Response = _MonkeyPatchedWSGIResponse | _MonkeyPatchedASGIResponse

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
PASSWORD = "s3cr3t-pass"
HEALTH_JSON = "application/health+json"
PATHS = ["/health/live", "/health/ready", "/health/"]
READY_PATHS = ["/health/ready", "/health/"]
FAIL_DOC = {"status": "fail", "checks": {"redis.default:responseTime": [{"status": "fail"}]}}
WARN_DOC = {"status": "warn", "checks": {"redis.default:responseTime": [{"status": "warn"}]}}
CONFIG_FAIL_DOC = {"status": "fail", "checks": {"connhealth:configuration": [{"status": "fail"}]}}
UNSET = object()
SETTING_NAMES = (
    "CONNHEALTH_TOKEN",
    "CONNHEALTH_CHECK_TIMEOUT",
    "CONNHEALTH_CACHE_SECONDS",
    "CONNHEALTH_PUBLISH_SECONDS",
)


@pytest.fixture(autouse=True)
def _isolated_probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CONNHEALTH_* from outside; no probe state or check thread outlives the test."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    readiness.clear()
    targets.clear()
    threads = set(threading.enumerate())
    yield
    readiness.clear()
    targets.clear()
    # Join the check threads (a check stuck on a dead socket ends with its
    # socket timeout), so none of them opens a connection after the pools close.
    prober.shutdown()
    assert set(threading.enumerate()) <= threads


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


def raw(response: Response) -> bytes:
    """Everything the client receives: status line aside, headers and body."""
    return response.serialize_headers() + b"\r\n\r\n" + response.content


def assert_anonymous(response: Response) -> None:
    """Only a status and the names of failing checks: no figure, host or error text."""
    document = body(response)
    assert set(document) <= {"status", "checks"}
    for entries in document.get("checks", {}).values():
        assert all(set(entry) == {"status"} for entry in entries), document
    content = response.content
    for name in document.get("checks", {}):
        content = content.replace(name.encode(), b"")
    assert not re.search(rb"\d", content), response.content
    for text in (b"127.0.0.1", b"redis://", b"Error", b"ms", b"output", b"componentId"):
        assert text not in response.content


def checkout(pool: ConnectionPool) -> Any:
    """Take a connection out of ``pool`` as the application does (and keep it)."""
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        return pool.get_connection("PING")


def sized_pool() -> SizedConnectionPool:
    pool = caches["default"].client.get_client().connection_pool  # type: ignore[attr-defined]
    assert isinstance(pool, SizedConnectionPool)
    return pool


def connhealth_clients(server: RedisServer) -> int:
    return sum(1 for client in server.client_list() if client["name"].startswith("connhealth:"))


def pings(server: RedisServer) -> int:
    stats = server.info("commandstats").get("cmdstat_ping", {})
    return int(stats.get("calls", 0))


# ------------------------------------------------------------------------ healthy


@pytest.mark.parametrize("probe", [True, False], ids=["middleware", "urlconf"])
@pytest.mark.parametrize("path", PATHS)
def test_healthy_answers_pass(path: str, probe: bool, redis_db: RedisDB) -> None:
    with health(redis_db.url, probe=probe):
        client = Client()
        response, elapsed = timed(client.get, path)
        assert response.status_code == 200
        assert body(response) == {"status": "pass"}
        assert elapsed < BOUND

        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert head["Content-Type"] == HEALTH_JSON
        assert head["Cache-Control"] == "no-store"


@pytest.mark.parametrize("probe", [True, False], ids=["middleware", "urlconf"])
@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
@pytest.mark.parametrize("path", PATHS)
def test_other_methods_are_not_allowed(
    path: str, method: str, probe: bool, redis_db: RedisDB
) -> None:
    with health(redis_db.url, probe=probe):
        # CSRF enforced as for a browser: it must not turn the 405 into a 403.
        client = Client(enforce_csrf_checks=True)
        response = getattr(client, method)(path)
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
        assert response["Cache-Control"] == "no-store"


# ------------------------------------------------------------------ Redis failing


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
        response = client.get("/health/ready")
        assert response.status_code == 200, response.content
        assert body(response) == {"status": "pass"}


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

        response = client.get("/health/ready")
        assert response.status_code == 200, response.content


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


# -------------------------------------------------------------------- saturation


def test_saturated_pool_warns_in_time(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, pool={"max_connections": 2}):
        client = Client()
        assert body(client.get("/health/ready")) == {"status": "pass"}
        pool = sized_pool()
        held = [checkout(pool), checkout(pool)]
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
        pool = sized_pool()
        held = [checkout(pool), checkout(pool)]
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


def test_pooled_connection_closed_by_the_server_is_replaced_not_reported(
    fresh_redis: RedisServer,
) -> None:
    """A server that closed an idle connection (timeout, CLIENT KILL) is still ready."""
    with health(fresh_redis.url, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        with fresh_redis.client() as helper:
            killed = helper.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        response = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.content
        assert body(response)["status"] == "pass"
        assert connhealth_clients(fresh_redis) == 1
        caches["default"].set("after", 1)
        assert caches["default"].get("after") == 1


@pytest.mark.parametrize("where", ["socket", "parser"])
def test_dirty_pooled_connection_is_replaced_not_reported(
    where: str, fresh_redis: RedisServer
) -> None:
    """A connection given back with a reply unread must neither fail the probe nor leak it.

    ``socket``: the reply waits in the kernel. ``parser``: redis-py's can_read()
    has seen it (redis-py 5 moves it into the parser's buffer; redis-py's own
    checkout then drops the connection, and the probe never reads that buffer).
    """
    with health(fresh_redis.url):
        client = Client()
        pool = sized_pool()
        connection = checkout(pool)
        connection.send_command("ECHO", "left-over")  # its reply is never read
        if where == "socket":
            assert select.select([connection._sock], [], [], 1.0)[0]
        else:
            assert connection.can_read(timeout=1.0)
        pool.release(connection)
        pings_before = pings(fresh_redis)
        response = client.get("/health/ready")
        assert response.status_code == 200, response.content
        assert body(response) == {"status": "pass"}
        if where == "socket":
            assert pings(fresh_redis) == pings_before + 2  # the dirty connection, then a new one
        caches["default"].set("after", "value")
        assert caches["default"].get("after") == "value"


def test_unread_reply_is_found_in_the_parser_or_on_the_socket(fresh_redis: RedisServer) -> None:
    """Wherever redis-py's parser left a reply, the probe sees that the connection is dirty."""
    with health(fresh_redis.url):
        pool = sized_pool()
        connection = checkout(pool)
        try:
            connection.connect()
            assert not holds_unread_reply(connection)
            connection.send_command("ECHO", "left-over")
            assert connection.can_read(timeout=1.0)
            on_socket = bool(select.select([connection._sock], [], [], 0)[0])
            assert holds_unread_reply(connection) != on_socket  # in exactly one of them
        finally:
            connection.disconnect()
            pool.release(connection)


def test_error_reply_fails_ready_with_the_servers_words(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        with fresh_redis.client() as helper:
            helper.acl_setuser("default", enabled=True, nopass=True, commands=["-ping"])
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert body(response) == FAIL_DOC
        detail = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})
        [check] = body(detail)["checks"]["redis.default:responseTime"]
        assert check["status"] == "fail"
        assert "NOPERM" in check["output"], check


def test_pool_class_of_the_users_is_pinged_through_redis_py(fresh_redis: RedisServer) -> None:
    pool_class = "redis.connection.BlockingConnectionPool"
    options = {"CONNECTION_POOL_CLASS": pool_class}
    with health(fresh_redis.url, options=options, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = client.get("/health/ready", headers=auth)
        assert response.status_code == 200, response.content
        document = body(response)
        assert document["status"] == "pass"
        assert "redis.default:connections" not in document["checks"]  # no figures to show
        fresh_redis.kill()
        failed, elapsed = timed(client.get, "/health/ready")
        assert failed.status_code == 503
        assert elapsed < BOUND, elapsed


# ------------------------------------------------------------------------ detail


def test_anonymous_failure_names_the_check_only(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url):
        client = Client()
        fresh_redis.kill()
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert body(response) == FAIL_DOC
        assert_anonymous(response)


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


@pytest.mark.django_db
def test_detail_for_token_and_staff_only(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url), override_settings(CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        for path in READY_PATHS:
            assert_detail(client.get(path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"), fresh_redis.url)
        assert_detail(client.get("/health/", HTTP_AUTHORIZATION=f"bearer {TOKEN}"), fresh_redis.url)
        for header in (f"Bearer {TOKEN}x", "Bearer ", "Bearer t0k3n", f"Basic {TOKEN}", TOKEN):
            response = client.get("/health/ready", HTTP_AUTHORIZATION=header)
            assert response.status_code == 200
            assert body(response) == {"status": "pass"}, header

        user_model = get_user_model()
        staff = user_model.objects.create_user("staff", is_staff=True)
        plain = user_model.objects.create_user("plain")
        client.force_login(plain)
        assert body(client.get("/health/ready")) == {"status": "pass"}
        client.force_login(staff)
        assert_detail(client.get("/health/ready"), fresh_redis.url)

        staff.is_active = False
        staff.save()
        client.force_login(staff)
        assert body(client.get("/health/ready")) == {"status": "pass"}


@pytest.mark.django_db
def test_staff_detail_without_token_setting(fresh_redis: RedisServer) -> None:
    assert not hasattr(settings, "CONNHEALTH_TOKEN")
    with health(fresh_redis.url):
        client = Client()
        response = client.get("/health/ready", HTTP_AUTHORIZATION="Bearer ")
        assert body(response) == {"status": "pass"}
        client.force_login(get_user_model().objects.create_user("staff", is_staff=True))
        assert_detail(client.get("/health/ready"), fresh_redis.url)


def test_token_from_the_environment(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not hasattr(settings, "CONNHEALTH_TOKEN")  # tests/settings.py leaves it out
    monkeypatch.setenv("CONNHEALTH_TOKEN", TOKEN)
    with health(fresh_redis.url):
        client = Client()
        assert_detail(
            client.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"), fresh_redis.url
        )
        response = client.get("/health/ready", HTTP_AUTHORIZATION="Bearer nope")
        assert body(response) == {"status": "pass"}
        # The setting, when present, wins over the environment.
        with override_settings(CONNHEALTH_TOKEN="other"):
            assert body(client.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")) == {
                "status": "pass"
            }


@pytest.mark.django_db
def test_password_never_appears(start_redis: StartRedis) -> None:
    server = start_redis(password=PASSWORD)
    assert PASSWORD in server.url
    redacted = server.url.replace(PASSWORD, "***")
    responses: list[Response] = []
    with health(server.url), override_settings(CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        staff = Client()
        staff.force_login(get_user_model().objects.create_user("staff", is_staff=True))
        bearer: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}

        def every_kind(status: int) -> None:
            for path in PATHS:
                for response in (
                    client.get(path),
                    client.get(path, **bearer),
                    staff.get(path),
                    client.head(path),
                    client.head(path, **bearer),
                    client.post(path, **bearer),
                    staff.delete(path),
                ):
                    responses.append(response)
                    if response.status_code != 405:
                        assert response.status_code == (200 if path.endswith("live") else status)

        every_kind(200)
        detail = client.get("/health/ready", **bearer)
        assert redacted.encode() in detail.content
        assert_detail(detail, redacted)

        server.kill()
        every_kind(503)
        detail = client.get("/health/ready", **bearer)
        [check] = body(detail)["checks"]["redis.default:responseTime"]
        assert check["componentId"] == redacted
        assert check["output"]  # the error, scrubbed
        responses.append(detail)

    assert len(responses) > 40
    for response in responses:
        assert PASSWORD.encode() not in raw(response)


def test_wrong_password_fails_without_leaking(start_redis: StartRedis) -> None:
    server = start_redis(password=PASSWORD)
    wrong = server.url.replace(PASSWORD, "wr0ng-pass")
    with health(wrong), override_settings(CONNHEALTH_TOKEN=TOKEN):
        response, elapsed = timed(
            Client().get, "/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        )
    assert response.status_code == 503
    assert elapsed < BOUND
    assert b"wr0ng-pass" not in raw(response)
    assert b"***" in response.content


# -------------------------------------------------------------- ProbeMiddleware


POD_IP = "10.1.2.3:8000"


@pytest.mark.django_db
def test_probe_middleware_answers_before_allowed_hosts(redis_db: RedisDB) -> None:
    with health(redis_db.url):
        client = Client()
        for path in PATHS:
            response = client.get(path, HTTP_HOST=POD_IP)
            assert response.status_code == 200, path
            assert body(response) == {"status": "pass"}
        assert client.head("/health/ready", HTTP_HOST=POD_IP).status_code == 200
        assert client.post("/health/ready", HTTP_HOST=POD_IP).status_code == 405
        # Everything else still goes through ALLOWED_HOSTS.
        assert client.get("/other", HTTP_HOST=POD_IP).status_code == 400
        assert client.get("/other").status_code == 200

        # A session cookie sends the request through the URLconf (for staff detail).
        client.force_login(get_user_model().objects.create_user("staff", is_staff=True))
        assert client.get("/health/ready", HTTP_HOST=POD_IP).status_code == 400
        assert_detail(client.get("/health/ready"), redis_db.url)


def test_without_probe_middleware_pod_ip_is_refused(redis_db: RedisDB) -> None:
    """Why ProbeMiddleware exists: the kubelet's Host is not in ALLOWED_HOSTS."""
    with health(redis_db.url, probe=False):
        client = Client()
        for path in PATHS:
            assert client.get(path, HTTP_HOST=POD_IP).status_code == 400
            assert client.get(path).status_code == 200


# ---------------------------------------------------------------- server's view


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


def test_check_under_way_in_another_process_is_not_joined(fresh_redis: RedisServer) -> None:
    """A forked child inherits the parent's record of a check under way, never its thread."""
    with health(fresh_redis.url):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        [target] = targets.get()
        never_done: Future[Any] = Future()
        with prober._lock:
            prober._this_process()
            prober._running[target.pool] = (never_done, Moment(time.monotonic() + 60))
            prober._pid = -1  # as a child sees the state its parent left
        response, elapsed = timed(client.get, "/health/ready")
        assert response.status_code == 200, response.content
        assert elapsed < CHECK_TIMEOUT
        assert prober._running[target.pool][0] is not never_done


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


# ------------------------------------------------------------ malformed settings


MALFORMED = [
    ("CONNHEALTH_CHECK_TIMEOUT", "abc"),
    ("CONNHEALTH_CHECK_TIMEOUT", -1),
    ("CONNHEALTH_CHECK_TIMEOUT", 0),
    ("CONNHEALTH_CHECK_TIMEOUT", float("nan")),
    ("CONNHEALTH_CACHE_SECONDS", "x"),
    ("CONNHEALTH_CACHE_SECONDS", -1),
    ("CONNHEALTH_TOKEN", 123),
    ("CONNHEALTH_TOKEN", " padded-token "),
]


def assert_misconfigured(client: Client, name: str, value: str) -> None:
    # The malformed value offered as a token too: a malformed CONNHEALTH_TOKEN must
    # not let its own value in, nor echo it.
    for path in READY_PATHS:
        for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {value}"}):
            response, elapsed = timed(client.get, path, **headers)
            assert response.status_code == 503
            assert body(response) == CONFIG_FAIL_DOC  # JSON: no error page, no traceback
            assert elapsed < BOUND
    assert client.get("/health/live").status_code == 200
    messages = check_settings()
    errors = [message for message in messages if message.id == "connhealth.E003"]
    assert len(errors) == 1, errors
    assert name in errors[0].msg
    if name == "CONNHEALTH_TOKEN":
        for message in messages:
            assert value not in f"{message.msg} {message.hint}"


@pytest.mark.parametrize(("name", "value"), MALFORMED, ids=[f"{n}={v!r}" for n, v in MALFORMED])
def test_malformed_setting_fails_ready_with_a_reason(
    name: str, value: object, redis_db: RedisDB, caplog: pytest.LogCaptureFixture
) -> None:
    setting: dict[str, Any] = {name: value}
    with health(redis_db.url, **setting):
        assert_misconfigured(Client(), name, str(value).strip())
    if name == "CONNHEALTH_TOKEN":
        assert str(value).strip() not in caplog.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNHEALTH_CHECK_TIMEOUT", "abc"),
        ("CONNHEALTH_CACHE_SECONDS", "-2"),
        ("CONNHEALTH_TOKEN", "tok "),
    ],
)
def test_malformed_environment_variable_fails_ready(
    name: str, value: str, redis_db: RedisDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with health(redis_db.url, CONNHEALTH_CHECK_TIMEOUT=UNSET):
        assert not hasattr(settings, name)
        assert_misconfigured(Client(), name, value.strip())


def test_token_bearer_sees_what_is_misconfigured(redis_db: RedisDB) -> None:
    with health(redis_db.url, CONNHEALTH_CHECK_TIMEOUT="abc", CONNHEALTH_TOKEN=TOKEN):
        response = Client().get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    [check] = body(response)["checks"]["connhealth:configuration"]
    assert check["status"] == "fail"
    assert "CONNHEALTH_CHECK_TIMEOUT" in check["output"]
    assert TOKEN not in check["output"]


def test_probe_middleware_not_first_warns() -> None:
    def w009() -> list[str]:
        return [message.msg for message in check_settings() if message.id == "connhealth.W009"]

    with override_settings(MIDDLEWARE=[*APP_MIDDLEWARE[:2], PROBE, *APP_MIDDLEWARE[2:]]):
        [message] = w009()
        assert PROBE in message
    with override_settings(MIDDLEWARE=[PROBE, *APP_MIDDLEWARE]):
        assert w009() == []
    with override_settings(MIDDLEWARE=APP_MIDDLEWARE):
        assert w009() == []
    assert check_settings() == []


# --------------------------------------------------------------------- async


def test_async_stack_uses_the_async_view(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sync_ready(request: object) -> None:
        raise AssertionError("the async stack must not block its loop in views.ready")

    monkeypatch.setattr(views, "ready", sync_ready)

    async def probe(path: str, host: str = "testserver") -> tuple[Response, float]:
        client = AsyncClient()
        started = time.monotonic()
        response = await client.get(path, headers={"host": host})
        return response, time.monotonic() - started

    async def scenario() -> None:
        response, _ = await probe("/health/ready")
        assert response.status_code == 200
        assert body(response) == {"status": "pass"}
        response, _ = await probe("/health/ready", POD_IP)
        assert response.status_code == 200

        fresh_redis.pause()
        try:
            # Two probes at once: neither waits for the other, or blocks the loop.
            (ready, elapsed), (again, elapsed_again), (live, live_elapsed) = await asyncio.gather(
                probe("/health/ready"), probe("/health/"), probe("/health/live")
            )
        finally:
            fresh_redis.resume()
        assert ready.status_code == again.status_code == 503
        assert body(ready) == body(again) == FAIL_DOC
        assert elapsed < BOUND, elapsed
        assert elapsed_again < BOUND, elapsed_again
        assert live.status_code == 200
        assert live_elapsed < 0.5, live_elapsed

        response, _ = await probe("/health/ready")
        assert response.status_code == 200

    with health(fresh_redis.url):
        # Not asyncio.run: asgiref would run the sync parts of the stack on its
        # process-wide executor thread, which then outlives the test.
        async_to_sync(scenario)()
