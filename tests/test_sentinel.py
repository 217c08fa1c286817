"""``django_connhealth.sentinel`` and the Sentinel adapter, on a real Sentinel set.

Each test gets its own master, replica and three ``redis-server --sentinel``
processes (quorum 2) on loopback; the failover ones force a real one with
``SENTINEL FAILOVER``, in this process and under gunicorn with several workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import caches
from django.test import Client, override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from django_connhealth import defaults, probes, sized_caches
from django_connhealth.naming import client_name
from django_connhealth.pool import PoolTimeoutError
from django_connhealth.publish import record_key
from django_connhealth.sentinel import SizedSentinelPool
from testproject.traffic import fan_out
from tests.helpers import (
    APP_MIDDLEWARE,
    BOUND,
    CHECK_TIMEOUT,
    FAIL_DOC,
    PROBE,
    TOKEN,
    acquire,
    body,
    gunicorn,
    report_json,
    timed,
    unique_host,
    wait_for,
)
from tests.redis_server import SERVICE
from tests.servers import child_env, join_publishers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.redis_server import RedisServer, SentinelSet

pytestmark = pytest.mark.usefixtures("isolated_probes")

#: What the spec allows from SENTINEL FAILOVER to a working app again.
FAILOVER_BOUND = 10.0
ENVIRON = {"CONNHEALTH_THREADS": "4"}
#: django-redis's docs: the stock pool class named, the factory set globally.
STOCK_FACTORY = "django_redis.pool.SentinelConnectionFactory"


def sentinel_caches(
    servers: SentinelSet, *, client: bool = True, host: str = "", **options: Any
) -> dict[str, dict[str, Any]]:
    """A sized Sentinel alias as django-redis's docs write one (``client``: SentinelClient)."""
    config_options: dict[str, Any] = {
        "SENTINELS": servers.addresses,
        "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
        **options,
    }
    if client:
        config_options["CLIENT_CLASS"] = "django_redis.client.SentinelClient"
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{SERVICE}/0",
        "OPTIONS": config_options,
    }
    environ = {**ENVIRON, "CONNHEALTH_HOST": host} if host else ENVIRON
    return sized_caches({"default": config}, environ=environ)


@pytest.fixture
def host() -> str:
    return unique_host()


@pytest.fixture
def sentinel_settings(sentinel_set: SentinelSet, host: str) -> Iterator[None]:
    """One sized master-and-replicas Sentinel alias, the health URLs and a token."""
    with override_settings(
        CACHES=sentinel_caches(sentinel_set, host=host),
        DJANGO_REDIS_CONNECTION_FACTORY=STOCK_FACTORY,
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[PROBE, *APP_MIDDLEWARE],
        CONNHEALTH_CHECK_TIMEOUT=CHECK_TIMEOUT,
        CONNHEALTH_TOKEN=TOKEN,
    ):
        yield


def pools() -> list[Any]:
    """The default alias's pools: the master's, then the replicas'."""
    client: Any = caches["default"].client  # type: ignore[attr-defined]
    return [client.connect(index).connection_pool for index in range(2)]


def named(server: RedisServer, host: str, pid: int | None = None) -> int:
    """Connections on ``server`` named for ``host`` (and ``pid``, if given)."""
    prefix = f"connhealth:{host}:"
    exact = None if pid is None else client_name(host, pid, "default")
    return sum(
        1
        for client in server.client_list()
        if (client["name"] == exact if exact else client["name"].startswith(prefix))
    )


# ------------------------------------------------------------------ the pools


@pytest.mark.usefixtures("sentinel_settings")
def test_sized_pools_are_blocking_counting_and_named_on_their_servers(
    sentinel_set: SentinelSet, host: str
) -> None:
    cache = caches["default"]
    cache.set("k", "v")
    # Read from the replica, which gets the write a moment later.
    wait_for(lambda: cache.get("k") == "v", what="the write read back from the replica")
    master_pool, replica_pool = pools()
    for pool, role in ((master_pool, "master"), (replica_pool, "replica")):
        assert isinstance(pool, SizedSentinelPool)
        assert isinstance(pool, SentinelConnectionPool)  # as SentinelClient requires
        assert pool.role == role
        assert pool.max_connections == 4 + defaults.POOL_HEADROOM
        assert pool.service_name == SERVICE
    master, replica = sentinel_set.master, sentinel_set.replicas[0]
    wait_for(lambda: named(replica, host, os.getpid()) >= 1, what="the replica read named")
    assert named(master, host, os.getpid()) >= 1
    assert master_pool.describe() == {
        "service": SERVICE,
        "role": "master",
        "master": f"127.0.0.1:{master.port}",
    }
    assert replica_pool.describe() == {"service": SERVICE, "role": "replica"}


@pytest.mark.usefixtures("sentinel_settings")
def test_a_full_pool_waits_then_times_out_instead_of_too_many_connections() -> None:
    caches["default"].set("k", "v")
    master_pool = pools()[0]
    held = [acquire(master_pool) for _ in range(master_pool.max_connections)]
    try:
        # redis-py's Sentinel pool would raise "Too many connections" at once.
        freed = threading.Timer(0.2, master_pool.release, (held.pop(),))
        freed.start()
        started = time.monotonic()
        caches["default"].set("k2", "v2")
        assert time.monotonic() - started >= 0.15
        freed.join()
        held.append(acquire(master_pool))  # full again
        with pytest.raises(PoolTimeoutError):
            master_pool.checkout(time.monotonic() + 0.1)
    finally:
        for connection in held:
            master_pool.release(connection)
    figures = master_pool.figures()
    # Both waited; a checkout by a deadline that gives up is its caller's, not the pool's timeout.
    assert (figures.waits, figures.timeouts) == (2, 0)


# -------------------------------------------------------------------- readiness


@pytest.mark.usefixtures("sentinel_settings")
def test_ready_passes_through_both_pools() -> None:
    caches["default"].set("k", "v")
    response = Client().get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    document = body(response)
    assert document["status"] == "pass"
    checks = document["checks"]["redis.default:responseTime"]
    assert [check["componentId"] for check in checks] == [
        f"redis://{SERVICE}/0?is_master=1",
        f"redis://{SERVICE}/0?is_master=0",
    ]
    assert [check["status"] for check in checks] == ["pass", "pass"]


@pytest.mark.usefixtures("sentinel_settings")
@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_ready_fails_in_time_with_sentinels_and_master_down(
    sentinel_set: SentinelSet, fault: str
) -> None:
    http = Client()
    caches["default"].set("k", "v")
    assert http.get("/health/ready").status_code == 200  # connections open and pooled
    for server in [*sentinel_set.sentinels, sentinel_set.master]:
        server.kill() if fault == "killed" else server.pause()
    try:
        for _ in range(3):
            response, elapsed = timed(http.get, "/health/ready")
            assert response.status_code == 503
            assert body(response)["status"] == "fail"
            assert elapsed < BOUND
        detailed = http.get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        outputs = [c["output"] for c in body(detailed)["checks"]["redis.default:responseTime"]]
        asked = ", ".join(f"{h}:{p}" for h, p in sentinel_set.addresses)
        no_master = f"MasterNotFoundError: no sentinel of {asked} names a master of 'mymaster'"
        # Paused sentinels time out one by one (1 s each), longer than a probe waits.
        late = f"no answer within {CHECK_TIMEOUT:g} s"
        assert outputs, outputs
        for output in outputs:
            assert output.startswith(no_master) or (fault == "paused" and output == late), output
    finally:
        if fault == "paused":
            for server in [*sentinel_set.sentinels, sentinel_set.master]:
                server.resume()


@pytest.mark.usefixtures("sentinel_settings")
def test_ready_fails_when_the_sentinels_name_no_master_though_servers_answer(
    sentinel_set: SentinelSet,
) -> None:
    """Pooled connections to a master that still answers PING are no reason to pass."""
    http = Client()
    caches["default"].set("k", "v")
    assert http.get("/health/ready").status_code == 200
    for sentinel in sentinel_set.sentinels:
        sentinel.kill()
    response = http.get("/health/ready")
    assert (response.status_code, body(response)) == (503, FAIL_DOC)


# --------------------------------------------------------------------- failover


def test_failover_is_followed_in_this_process(sentinel_set: SentinelSet, host: str) -> None:
    with override_settings(
        CACHES=sentinel_caches(sentinel_set, client=False, host=host),
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[PROBE, *APP_MIDDLEWARE],
        CONNHEALTH_CHECK_TIMEOUT=CHECK_TIMEOUT,
    ):
        http = Client()
        cache = caches["default"]
        cache.set("k", "before")
        assert http.get("/health/ready").status_code == 200
        started = time.monotonic()
        old, new = sentinel_set.failover()

        def following() -> bool:
            return (
                http.get("/health/ready").status_code == 200
                and cache.add(f"k-{time.monotonic()}", "after") is True
                and named(new, host) >= 1
                and named(old, host) == 0
            )

        wait_for(following, FAILOVER_BOUND, "the pool following the new master")
        elapsed = time.monotonic() - started
        assert elapsed < FAILOVER_BOUND
        with new.client() as client:
            assert client.keys(":1:k-*")  # the writes went to the new master


def test_failover_under_gunicorn(sentinel_set: SentinelSet, tmp_path: Path, host: str) -> None:
    """Three gthread workers follow a forced failover: ready and the cache view within 10 s."""
    env = {
        **child_env(),
        "REDIS_URL": f"redis://{SERVICE}/0",
        "REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in sentinel_set.addresses),
        "CONNHEALTH_HOST": host,
        "CONNHEALTH_CHECK_TIMEOUT": str(CHECK_TIMEOUT),
    }
    args = ["-w", "3", "--threads", "2"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", 3) as (base, _master, workers):

        def every_worker_named_on(server: RedisServer) -> bool:
            fan_out([f"{base}/"] * 24, 12)
            return all(named(server, host, pid) >= 1 for pid in workers)

        wait_for(lambda: every_worker_named_on(sentinel_set.master), what="workers named")
        started = time.monotonic()
        old, new = sentinel_set.failover()

        def recovered() -> bool:
            ready = fan_out([f"{base}/health/ready"] * 24, 12)
            views = fan_out([f"{base}/"] * 24, 12)
            return (
                all(status == 200 for status, _ in ready + views)
                and every_worker_named_on(new)
                and named(old, host) == 0
            )

        wait_for(recovered, FAILOVER_BOUND, "every worker on the new master")
        elapsed = time.monotonic() - started
        assert elapsed < FAILOVER_BOUND, elapsed


# ---------------------------------------------------------------------- report


@pytest.mark.usefixtures("sentinel_settings")
def test_command_resolves_the_master_through_the_sentinels(sentinel_set: SentinelSet) -> None:
    caches["default"].set("k", "v")
    report, code = report_json()
    assert code == 0
    alias = report["caches"]["default"]
    assert alias["status"] == "pass"
    master_entry, replica_entry = alias["pools"]
    assert master_entry["location"] == f"redis://{SERVICE}/0?is_master=1"
    assert master_entry["service"] == SERVICE
    assert master_entry["role"] == "master"
    assert master_entry["master"] == f"127.0.0.1:{sentinel_set.master.port}"
    assert master_entry["max_connections"] == 4 + defaults.POOL_HEADROOM
    assert replica_entry["role"] == "replica"
    assert "master" not in replica_entry
    with sentinel_set.master.client() as client:
        assert alias["server"]["maxclients"] == int(client.info("clients")["maxclients"])


@pytest.mark.usefixtures("sentinel_settings")
def test_command_with_the_sentinels_down_exits_1_and_says_why(sentinel_set: SentinelSet) -> None:
    for sentinel in sentinel_set.sentinels:
        sentinel.kill()
    report, code = report_json()
    assert code == 1
    alias = report["caches"]["default"]
    assert alias["status"] == "fail"
    assert alias["notes"][0].startswith(
        f"redis://{SERVICE}/0?is_master=1 unreachable: MasterNotFoundError: no sentinel of "
    )


def test_probes_find_both_pools_of_a_sentinel_client(sentinel_set: SentinelSet) -> None:
    with override_settings(
        CACHES=sentinel_caches(sentinel_set), DJANGO_REDIS_CONNECTION_FACTORY=STOCK_FACTORY
    ):
        caches["default"].get("k")
        targets = probes.targets.get()
        assert [target.pool for target in targets] == pools()


def test_unsized_sentinel_alias_is_checked_through_the_sentinels(sentinel_set: SentinelSet) -> None:
    """Without sized_caches: pinged on a connection made like its pool's, so asked the same way."""
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{SERVICE}/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "SENTINELS": sentinel_set.addresses,
            "SOCKET_TIMEOUT": 0.5,
            # What sized_caches() sets: redis-py 8 would retry each dead sentinel with
            # backoff for seconds, past this test's end (readiness answers in time anyway).
            "SENTINEL_KWARGS": {"socket_timeout": 0.5, "retry": Retry(NoBackoff(), 0)},
        },
    }
    with override_settings(
        CACHES={"default": config},
        DJANGO_REDIS_CONNECTION_FACTORY=STOCK_FACTORY,
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[PROBE, *APP_MIDDLEWARE],
        CONNHEALTH_CHECK_TIMEOUT=CHECK_TIMEOUT,
    ):
        http = Client()
        assert http.get("/health/ready").status_code == 200
        for sentinel in sentinel_set.sentinels:
            sentinel.kill()
        response, elapsed = timed(http.get, "/health/ready")
        assert (response.status_code, body(response)) == (503, FAIL_DOC)
        assert elapsed < BOUND


@pytest.mark.usefixtures("sentinel_settings")
def test_figures_are_published_to_the_master_and_replicas_are_not_written_to(
    sentinel_set: SentinelSet, host: str
) -> None:
    cache = caches["default"]
    with override_settings(CONNHEALTH_PUBLISH_SECONDS=10):
        cache.set("k", "v")
        cache.get("k")  # the replicas' pool: used and given back, so its hook ran
        key = record_key(host, os.getpid(), "default")
        with sentinel_set.master.client() as client:
            wait_for(lambda: client.get(key) is not None, what="the record on the master")
        join_publishers()
    replica_pool = pools()[1]
    assert replica_pool.slots.due_at == math.inf  # never due: it publishes nothing
    errors = sentinel_set.replicas[0].info("errorstats")
    assert "errorstat_READONLY" not in errors, errors


@pytest.mark.usefixtures("sentinel_settings")
def test_connections_dropped_while_no_master_is_named_are_not_kept(
    sentinel_set: SentinelSet,
) -> None:
    """redis-py's blocking pool lists every connection it made: the dropped ones must go.

    With no master ever named (the sentinels down from the start), each failed
    connect would leave one more behind, for the life of the process.
    """
    for sentinel in sentinel_set.sentinels:
        sentinel.kill()
    cache = caches["default"]
    for _ in range(50):
        with contextlib.suppress(Exception):
            cache.set("k", "v")  # fails: no master named
    made: list[Any] = pools()[0]._connections
    assert len(made) <= pools()[0].max_connections
