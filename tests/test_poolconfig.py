"""Reading back a pool's effective settings (``django_connhealth.poolconfig``): redis-py's
defaults, what only a blocking pool takes, the fallbacks redis-py applies, and
``PoolConfig``. Driven through the django-redis adapter's ``pool_config``; no Redis needed.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from redis.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool

from django_connhealth.adapters.django_redis import (
    pool_config,
)
from django_connhealth.poolconfig import PoolConfig
from tests.helpers import CACHE_URL


def redis_py_default(name: str) -> Any:
    return inspect.signature(AbstractConnection.__init__).parameters[name].default


def test_pool_config_redis_py_defaults() -> None:
    """Nothing set: redis-py's own defaults (whatever this redis-py version's are)."""
    config = pool_config({}, CACHE_URL)

    socket_timeout = redis_py_default("socket_timeout")
    connect_timeout = redis_py_default("socket_connect_timeout")
    assert config.pool_class is ConnectionPool
    assert not config.blocking
    assert config.values == {
        "max_connections": ConnectionPool().max_connections,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout if connect_timeout is None else connect_timeout,
        "health_check_interval": redis_py_default("health_check_interval"),
    }
    assert config.sources == dict.fromkeys(config.values, "redis-py")


def test_pool_config_blocking_pool_defaults() -> None:
    config = pool_config({"CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool"}, CACHE_URL)
    assert config.pool_class is BlockingConnectionPool
    assert config.blocking
    params = inspect.signature(BlockingConnectionPool.__init__).parameters
    assert config.values["max_connections"] == params["max_connections"].default
    assert config.values["timeout"] == params["timeout"].default
    assert config.sources["timeout"] == "redis-py"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"CONNECTION_POOL_CLASS": "redis.connection.ConnectionPool"},
        {"CONNECTION_POOL_KWARGS": {"timeout": 5}},
    ],
)
def test_pool_config_non_blocking_pool_has_no_timeout(options: dict[str, Any]) -> None:
    config = pool_config(options, CACHE_URL)
    assert "timeout" not in config.values
    assert "timeout" not in config.sources
    assert "timeout" not in config.as_dict()


@pytest.mark.parametrize(
    ("options", "socket_timeout", "source"),
    [
        ({"SOCKET_TIMEOUT": 3}, 3, "OPTIONS"),
        ({"CONNECTION_POOL_KWARGS": {"socket_timeout": 4}}, 4, "OPTIONS"),
        ({"CONNECTION_POOL_KWARGS": {"socket_timeout": 4}, "SOCKET_TIMEOUT": 3}, 4, "OPTIONS"),
    ],
)
def test_pool_config_connect_timeout_falls_back_to_socket_timeout(
    options: dict[str, Any], socket_timeout: float, source: str
) -> None:
    """redis-py connects with the socket timeout when no connect timeout is set.

    redis-py 8 defaults the connect timeout to 5 s, so there it is not None and
    no fallback happens; before 8 it is None and the socket timeout is used.
    """
    config = pool_config(options, CACHE_URL)

    assert config.values["socket_timeout"] == socket_timeout
    assert config.sources["socket_timeout"] == source
    connect_timeout = redis_py_default("socket_connect_timeout")
    if connect_timeout is None:
        assert config.values["socket_connect_timeout"] == socket_timeout
        assert config.sources["socket_connect_timeout"] == source
    else:
        assert config.values["socket_connect_timeout"] == connect_timeout
        assert config.sources["socket_connect_timeout"] == "redis-py"


@pytest.mark.parametrize("value", [0, None])
def test_pool_config_false_option_ignored_as_django_redis_does(value: float | None) -> None:
    config = pool_config({"SOCKET_TIMEOUT": value}, CACHE_URL)
    assert config.values["socket_timeout"] == redis_py_default("socket_timeout")
    assert config.sources["socket_timeout"] == "redis-py"


@pytest.mark.parametrize(
    "pool_class_path",
    [
        "redis.connection.ConnectionPool",
        "redis.BlockingConnectionPool",
        "django_connhealth.pool.SizedConnectionPool",
    ],
)
@pytest.mark.parametrize("value", [None, 0])
def test_pool_config_false_max_connections_is_redis_pys_default(
    pool_class_path: str, value: int | None
) -> None:
    """redis-py reads max_connections=None (or 0) as its own default for any pool."""
    options = {
        "CONNECTION_POOL_CLASS": pool_class_path,
        "CONNECTION_POOL_KWARGS": {"max_connections": value},
    }
    config = pool_config(options, CACHE_URL)
    assert config.values["max_connections"] == ConnectionPool(max_connections=None).max_connections
    assert config.sources["max_connections"] == "OPTIONS"


def test_pool_config_connect_timeout_none_falls_back_to_socket_timeout() -> None:
    options = {"CONNECTION_POOL_KWARGS": {"socket_timeout": 4, "socket_connect_timeout": None}}
    config = pool_config(options, CACHE_URL)
    assert config.values["socket_connect_timeout"] == 4
    assert config.sources["socket_connect_timeout"] == "OPTIONS"


def test_pool_config_unimportable_pool_class() -> None:
    config = pool_config({"CONNECTION_POOL_CLASS": "connhealth_no_such.Pool"}, CACHE_URL)
    assert config.pool_class is None
    assert not config.blocking
    assert config.values == dict.fromkeys(
        (
            "max_connections",
            "timeout",
            "socket_timeout",
            "socket_connect_timeout",
            "health_check_interval",
        )
    )
    assert set(config.sources.values()) == {"redis-py"}


def test_pool_config_as_dict_redacts() -> None:
    config = pool_config({}, "redis://:hunter2@h:6379/0?max_connections=4")
    assert config.location == "redis://:***@h:6379/0?max_connections=4"
    rendered = config.as_dict()
    assert rendered["location"] == "redis://:***@h:6379/0?max_connections=4"
    assert rendered["max_connections"] == 4
    assert rendered["sources"]["max_connections"] == "LOCATION"
    assert "hunter2" not in repr(rendered)
    assert isinstance(config, PoolConfig)
