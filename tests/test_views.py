"""The health views (``django_connhealth.views``) in process, through Django's test clients,
against real redis-servers: methods, who sees detail, malformed settings, the async view.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client, override_settings

from django_connhealth import views
from django_connhealth.checks import check_settings
from tests.helpers import (
    BOUND,
    FAIL_DOC,
    HEALTH_JSON,
    PATHS,
    POD_IP,
    READY_PATHS,
    TOKEN,
    UNSET,
    assert_detail,
    body,
    health,
    timed,
)

if TYPE_CHECKING:
    from tests.conftest import RedisDB, StartRedis
    from tests.helpers import Response
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")

PASSWORD = "s3cr3t-pass"
CONFIG_FAIL_DOC = {"status": "fail", "checks": {"connhealth:configuration": [{"status": "fail"}]}}


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


# -------------------------------------------------------------------- saturation


# ------------------------------------------------------------------------ detail


def test_anonymous_failure_names_the_check_only(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url):
        client = Client()
        fresh_redis.kill()
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert body(response) == FAIL_DOC
        assert_anonymous(response)


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


# ---------------------------------------------------------------- server's view


# ------------------------------------------------------------ malformed settings


MALFORMED = [
    ("CONNHEALTH_CHECK_TIMEOUT", "abc"),
    ("CONNHEALTH_CHECK_TIMEOUT", -1),
    ("CONNHEALTH_CHECK_TIMEOUT", 0),
    ("CONNHEALTH_CHECK_TIMEOUT", float("nan")),
    ("CONNHEALTH_CACHE_SECONDS", "x"),
    ("CONNHEALTH_CACHE_SECONDS", -1),
    # a malformed interval stops publishing: readiness must not pass meanwhile
    ("CONNHEALTH_PUBLISH_SECONDS", "abc"),
    ("CONNHEALTH_PUBLISH_SECONDS", 0.001),  # below the minimum
    ("CONNHEALTH_TOKEN", 123),
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

        # the failure stands for one check timeout after it was seen
        recovered_by = time.monotonic() + BOUND
        while (await probe("/health/ready"))[0].status_code != 200:
            assert time.monotonic() < recovered_by, "no recovery"
            await asyncio.sleep(0.05)

    with health(fresh_redis.url):
        # Not asyncio.run: asgiref would run the sync parts of the stack on its
        # process-wide executor thread, which then outlives the test.
        async_to_sync(scenario)()


@pytest.mark.parametrize("where", ["setting", "environment"])
def test_token_with_a_trailing_newline_is_the_token(
    where: str, redis_db: RedisDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token mounted from a secret file ends in a newline: readiness stays 200 and it works."""
    extra: dict[str, Any] = {}
    if where == "setting":
        extra["CONNHEALTH_TOKEN"] = f"{TOKEN}\n"
    else:
        monkeypatch.setenv("CONNHEALTH_TOKEN", f"{TOKEN}\n")
    with health(redis_db.url, **extra):
        client = Client()
        anonymous = client.get("/health/ready")
        assert (anonymous.status_code, body(anonymous)) == (200, {"status": "pass"})
        detailed = client.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert detailed.status_code == 200
        assert "redis.default:connections" in body(detailed)["checks"]
