"""Django's built-in RedisCache (``django_connhealth.adapters.django_builtin``): sized
options, one pool per server per process shared by every thread, readiness, the
command and W008, against real redis-servers.
"""

from __future__ import annotations

import copy
import io
import json
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client, override_settings

from django_connhealth import defaults, sized_caches
from django_connhealth.adapters.django_builtin import SHARED_POOL_CLASS, SharedSizedPool, servers
from django_connhealth.checks import check_redis_pools
from testproject.traffic import fan_out
from tests.helpers import BOUND, FAIL_DOC, TOKEN, body, gunicorn, timed
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

BUILTIN = "django.core.cache.backends.redis.RedisCache"
ENVIRON = {"CONNHEALTH_THREADS": "8", "CONNHEALTH_HOST": "web-1"}


def builtin(location: str, **options: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"BACKEND": BUILTIN, "LOCATION": location}
    if options:
        config["OPTIONS"] = options
    return config


def test_sized_options_fill_what_the_user_did_not_set() -> None:
    user = {"default": builtin("redis://127.0.0.1:6379/0", socket_timeout=3.0)}
    before = copy.deepcopy(user)
    options = sized_caches(user, environ=ENVIRON)["default"]["OPTIONS"]
    assert user == before  # not mutated
    assert options == {
        "pool_class": SHARED_POOL_CLASS,
        "max_connections": 10,  # 8 threads + headroom 2
        "timeout": defaults.POOL_TIMEOUT,
        "socket_timeout": 3.0,  # the user's
        "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
        "health_check_interval": defaults.HEALTH_CHECK_INTERVAL,
        "connhealth_retries": defaults.RETRIES,
        "connhealth_alias": "default",
        "connhealth_host": "web-1",
        "CONNHEALTH": {
            "concurrency": {
                "workers": 1,
                "threads": 8,
                "worker_class": "gthread",
                "role": "other",
                "sources": {
                    "workers": "default",
                    "threads": "CONNHEALTH_THREADS",
                    "worker_class": "default",
                },
            },
            "headroom": 2,
            "sources": {
                "max_connections": "derived",
                "timeout": "default",
                "socket_timeout": "OPTIONS",
                "socket_connect_timeout": "default",
                "health_check_interval": "default",
                "retry": "default",
            },
        },
    }


def test_a_pool_class_of_the_users_is_left_alone() -> None:
    user = {"default": builtin("redis://h/0", pool_class="redis.BlockingConnectionPool")}
    assert sized_caches(user, environ=ENVIRON) == user


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("redis://a/0", ["redis://a/0"]),
        ("redis://a/0;redis://b/0,redis://c/0", ["redis://a/0", "redis://b/0", "redis://c/0"]),
        (["redis://a/0", "redis://b/0"], ["redis://a/0", "redis://b/0"]),
    ],
)
def test_servers_split_like_django(location: Any, expected: list[str]) -> None:
    assert servers({"LOCATION": location}) == expected


def connections_named(server: RedisServer, host: str) -> int:
    return sum(1 for e in server.client_list() if e["name"].startswith(f"connhealth:{host}:"))


def run_in_threads(count: int, work: Any) -> list[Any]:
    """``work()`` in ``count`` threads started together; what each returned."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_every_thread_shares_one_sized_named_pool(fresh_redis: RedisServer) -> None:
    """Django gives each thread its own pools; sized, the process has one per server."""
    host = f"builtin-{uuid.uuid4().hex[:8]}"
    sized = sized_caches(
        {"default": builtin(fresh_redis.url)},
        environ={"CONNHEALTH_THREADS": "2", "CONNHEALTH_HOST": host},
    )
    with override_settings(CACHES=sized):

        def work() -> Any:
            cache: Any = caches["default"]  # this thread's own cache object
            cache.set("k", "v")
            assert cache.get("k") == "v"
            return cache._cache.get_client(write=True).connection_pool

        pools = run_in_threads(16, work)
        assert len({id(pool) for pool in pools}) == 1
        [pool] = {id(pool): pool for pool in pools}.values()
        assert isinstance(pool, SharedSizedPool)
        assert pool.max_connections == 4
        figures = pool.figures()
        assert figures.created <= 4
        assert figures.waits >= 0
        assert connections_named(fresh_redis, host) == figures.created <= 4


def test_django_alone_opens_a_pool_per_thread(fresh_redis: RedisServer) -> None:
    """What the sizing replaces: unsized, 16 threads make 16 pools and connections."""
    with override_settings(CACHES={"default": builtin(fresh_redis.url)}):

        def work() -> Any:
            cache: Any = caches["default"]
            cache.set("k", "v")
            # the cache object too: a thread's cache, once dropped, may close its pool
            return cache, cache._cache.get_client(write=True).connection_pool

        held = run_in_threads(16, work)
        pools = [pool for _, pool in held]
        assert len({id(pool) for pool in pools}) == 16
        try:
            opened = [e for e in fresh_redis.client_list() if e["cmd"] == "set"]
            assert len(opened) == 16
        finally:
            for pool in pools:
                pool.disconnect()


def test_readiness_pings_the_shared_pool(fresh_redis: RedisServer) -> None:
    sized = sized_caches({"default": builtin(fresh_redis.url)}, environ=ENVIRON)
    with override_settings(CACHES=sized, ROOT_URLCONF="tests.health_urls", CONNHEALTH_TOKEN=TOKEN):
        http = Client()
        response = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        checks = body(response)["checks"]
        assert [c["status"] for c in checks["redis.default:responseTime"]] == ["pass"]
        assert checks["redis.default:connections"][0]["max_connections"] == 10
        cache: Any = caches["default"]
        assert cache._cache.get_client(write=True).connection_pool.figures().created == 1
        fresh_redis.kill()
        down, elapsed = timed(http.get, "/health/ready")
        assert (down.status_code, body(down)) == (503, FAIL_DOC)
        assert elapsed < BOUND


def test_command_reports_the_alias(redis_db: RedisDB) -> None:
    sized = sized_caches({"default": builtin(redis_db.url)}, environ=ENVIRON)
    with override_settings(CACHES=sized):
        caches["default"].set("k", "v")
        out = io.StringIO()
        call_command("connhealth", "--format", "json", stdout=out)
    report = json.loads(out.getvalue())["caches"]["default"]
    assert report["status"] == "pass"
    [pool] = report["pools"]
    assert (pool["max_connections"], pool["sources"]["max_connections"]) == (10, "derived")
    assert (pool["socket_timeout"], pool["sources"]["socket_timeout"]) == (1.0, "default")
    assert report["server"]["connected_clients"] >= 1
    # this process is left out of its own report
    assert [row for row in report["processes"] if row["pid"] == os.getpid()] == []


def test_w008_only_when_unsized() -> None:
    unsized = {"default": builtin("redis://127.0.0.1:6379/0")}
    with override_settings(CACHES=unsized):
        [w008] = [m for m in check_redis_pools() if m.id == "connhealth.W008"]
    assert "unsized" in w008.msg
    with override_settings(CACHES=sized_caches(unsized, environ=ENVIRON)):
        assert [m.id for m in check_redis_pools()] == []


@pytest.mark.gunicorn
@pytest.mark.parametrize("mode", ["sized", "unsized"])
def test_under_gunicorn_gthread_one_worker_eight_threads(
    mode: str, fresh_redis: RedisServer, tmp_path: Path
) -> None:
    """A burst of 32 requests on 1 worker x 8 threads: sized, one pool of at most 10, named."""
    host = f"gthread-{uuid.uuid4().hex[:8]}"
    env = child_env(
        REDIS_URL=fresh_redis.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        TESTPROJECT_BUILTIN=mode,
        CONNHEALTH_HOST=host,
    )
    with gunicorn(["-w", "1", "--threads", "8"], env, tmp_path / "gunicorn.log", 1) as (
        base,
        _master,
        [worker],
    ):
        for _ in range(3):
            answers = fan_out([f"{base}/work-builtin"] * 32, 32)
            assert [status for status, _ in answers] == [200] * 32
        entries = fresh_redis.client_list()
    builtin_named = [e for e in entries if e["name"] == f"connhealth:{host}:{worker}:builtin"]
    # Unnamed connections: the builtin alias's, unsized (the django-redis alias and
    # the helper that asks name theirs).
    unnamed = [e for e in entries if e["name"] == ""]
    print(f"{mode}: {len(builtin_named)} named, {len(unnamed)} unnamed builtin connections")
    if mode == "sized":
        assert 1 <= len(builtin_named) <= 8 + 2  # threads + headroom
        assert unnamed == []
    else:
        assert builtin_named == []
        assert len(unnamed) >= 2  # Django alone: a pool, so a connection, per thread


def test_other_options_are_another_shared_pool() -> None:
    one = SharedSizedPool.from_url("redis://127.0.0.1:1/0", max_connections=3, connhealth_alias="a")
    same = SharedSizedPool.from_url(
        "redis://127.0.0.1:1/0", max_connections=3, connhealth_alias="a"
    )
    other = SharedSizedPool.from_url(
        "redis://127.0.0.1:1/0", max_connections=5, connhealth_alias="a"
    )
    assert one is same
    assert other is not one
    assert (one.max_connections, other.max_connections) == (3, 5)
