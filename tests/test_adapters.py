"""The django-redis adapter (``django_connhealth.adapters.django_redis``): where its
pools are (``locations``, ``location_query``), their class, and how its layers of
settings (LOCATION query, CONNECTION_POOL_KWARGS, OPTIONS) make a pool's effective
settings (``pool_config``), without Redis; and a ShardClient on real servers.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, override_settings
from redis.connection import BlockingConnectionPool, ConnectionPool, parse_url

from django_connhealth import defaults, sized_caches
from django_connhealth.adapters.django_redis import (
    adapter,
    location_query,
    locations,
    pool_class,
    pool_config,
)
from django_connhealth.pool import SizedConnectionPool
from tests.helpers import CACHE_URL, TOKEN, sized_one

if TYPE_CHECKING:
    from tests.conftest import StartRedis


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (CACHE_URL, [CACHE_URL]),
        ("redis://a/0,redis://b/0", ["redis://a/0", "redis://b/0"]),
        ("redis://a/0,", ["redis://a/0"]),
        ("", []),
        (["redis://a/0", "redis://b/0"], ["redis://a/0", "redis://b/0"]),
        (("redis://a/0",), ["redis://a/0"]),
        ([], []),
    ],
)
def test_locations(location: Any, expected: list[str]) -> None:
    assert locations({"LOCATION": location}) == expected


def test_locations_missing() -> None:
    assert locations({}) == []


QUERY_URL = "redis://cache.internal:6379/0?max_connections=5&socket_timeout=3"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (QUERY_URL, {"max_connections": "5", "socket_timeout": "3"}),
        (CACHE_URL, {}),
        ("redis://h/0?max_connections=5&max_connections=7", {"max_connections": "5"}),
        ("redis://h/0?max_connections=", {}),
        ("unix:///tmp/r.sock?db=1&socket_timeout=0.5", {"db": "1", "socket_timeout": "0.5"}),
    ],
)
def test_location_query(url: str, expected: dict[str, str]) -> None:
    assert location_query(url) == expected


def test_location_query_matches_redis_py_for_repeated_keys() -> None:
    url = "redis://h/0?max_connections=5&max_connections=7"
    parsed = parse_url(url)
    assert int(location_query(url)["max_connections"]) == parsed["max_connections"]


def test_pool_config_location_query_wins() -> None:
    options = sized_one()

    config = pool_config(options, QUERY_URL)

    assert config.values == {
        "max_connections": 5,
        "timeout": defaults.POOL_TIMEOUT,
        "socket_timeout": 3.0,
        "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
        "health_check_interval": defaults.HEALTH_CHECK_INTERVAL,
    }
    assert config.sources == {
        "max_connections": "LOCATION",
        "timeout": "default",
        "socket_timeout": "LOCATION",
        "socket_connect_timeout": "default",
        "health_check_interval": "default",
    }
    assert config.blocking
    assert config.pool_class is not None
    assert config.pool_class.__name__ == "SizedConnectionPool"


def test_pool_config_location_query_beats_user_kwargs_and_options() -> None:
    options = {
        "CONNECTION_POOL_KWARGS": {"max_connections": 50, "health_check_interval": 10},
        "SOCKET_TIMEOUT": 9,
    }
    url = "redis://h/0?max_connections=5&socket_timeout=3&health_check_interval=1"

    config = pool_config(options, url)

    assert config.values["max_connections"] == 5
    assert config.values["socket_timeout"] == 3.0
    assert config.values["health_check_interval"] == 1
    assert {config.sources[key] for key in ("max_connections", "socket_timeout")} == {"LOCATION"}


@pytest.mark.parametrize(
    ("url", "key", "value"),
    [
        ("redis://h/0?max_connections=abc", "max_connections", "abc"),
        ("redis://h/0?health_check_interval=1.5", "health_check_interval", "1.5"),
        ("redis://h/0?socket_timeout=soon", "socket_timeout", "soon"),
        ("redis://h/0?socket_connect_timeout=0.25", "socket_connect_timeout", 0.25),
    ],
)
def test_pool_config_query_value_as_written_when_unparsable(url: str, key: str, value: Any) -> None:
    config = pool_config({}, url)
    assert config.values[key] == value
    assert config.sources[key] == "LOCATION"


def test_pool_config_connect_timeout_from_location_is_not_replaced() -> None:
    config = pool_config({"SOCKET_TIMEOUT": 3}, "redis://h/0?socket_connect_timeout=0.5")
    assert config.values["socket_connect_timeout"] == 0.5
    assert config.sources["socket_connect_timeout"] == "LOCATION"


def test_pool_config_user_kwargs_without_report() -> None:
    """Pool kwargs the user wrote (no CONNHEALTH report) are reported as OPTIONS."""
    options = {
        "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
        "CONNECTION_POOL_KWARGS": {"max_connections": 12, "timeout": 1.5},
    }
    config = pool_config(options, CACHE_URL)
    assert (config.values["max_connections"], config.values["timeout"]) == (12, 1.5)
    assert config.sources["max_connections"] == config.sources["timeout"] == "OPTIONS"


def test_pool_config_reports_what_sized_caches_recorded() -> None:
    options = sized_one(CONNECTION_POOL_KWARGS={"max_connections": 9})
    config = pool_config(options, CACHE_URL)
    assert config.sources == {
        "max_connections": "OPTIONS",
        "timeout": "default",
        "socket_timeout": "default",
        "socket_connect_timeout": "default",
        "health_check_interval": "default",
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("redis.connection.ConnectionPool", ConnectionPool),
        ("redis.BlockingConnectionPool", BlockingConnectionPool),
        ("connhealth_no_such.Pool", None),
        ("redis.connection.Connection", None),
        ("redis.connection.DEFAULT_RESP_VERSION", None),
    ],
)
def test_pool_class(path: str, expected: type[ConnectionPool] | None) -> None:
    assert pool_class({"CONNECTION_POOL_CLASS": path}) is expected


# ------------------------------------------------------------- ShardClient (real servers)


def test_shard_client_every_shard_sized_pinged_and_reported(start_redis: StartRedis) -> None:
    """django-redis's ShardClient: one sized, named pool per shard, each pinged and reported."""
    shards = [start_redis(), start_redis()]
    host = f"shards-{uuid.uuid4().hex[:8]}"
    caches = sized_caches(
        {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": [server.url for server in shards],
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
            }
        },
        environ={"CONNHEALTH_THREADS": "2", "CONNHEALTH_HOST": host},
    )
    with override_settings(CACHES=caches, ROOT_URLCONF="tests.health_urls", CONNHEALTH_TOKEN=TOKEN):
        for number in range(40):  # keys land on both shards
            cache.set(f"key-{number}", number)
        pools = [live.pool for live in adapter.alias_pools("default", caches["default"])]
        assert all(isinstance(pool, SizedConnectionPool) for pool in pools)
        assert [pool.max_connections for pool in pools] == [4, 4]
        response = Client().get("/health/ready", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        out = io.StringIO()
        call_command("connhealth", "--format", "json", stdout=out)
    for server in shards:
        names = [e["name"] for e in server.client_list()]
        assert f"connhealth:{host}:{os.getpid()}:default" in names
    assert response.status_code == 200
    checks = json.loads(response.content)["checks"]["redis.default:responseTime"]
    assert [check["componentId"] for check in checks] == [server.url for server in shards]
    assert [check["status"] for check in checks] == ["pass", "pass"]
    report = json.loads(out.getvalue())["caches"]["default"]
    assert [pool["location"] for pool in report["pools"]] == [server.url for server in shards]
    assert [pool["max_connections"] for pool in report["pools"]] == [4, 4]
    assert all(pool["server"]["connected_clients"] >= 1 for pool in report["pools"])
