"""``sized_caches``, ``pool_config``, client names and URL redaction: no Redis needed."""

from __future__ import annotations

import copy
import inspect
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool, parse_url
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.adapters.django_redis import (
    location_query,
    locations,
    pool_class,
    pool_config,
)
from django_connhealth.caches import sized_caches
from django_connhealth.conf import client_host
from django_connhealth.naming import ClientName, client_name, parse_client_name
from django_connhealth.poolconfig import PoolConfig
from django_connhealth.redact import redact_url

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REDIS = "django_redis.cache.RedisCache"
URL = "redis://cache.internal:6379/0"
ENVIRON = {"CONNHEALTH_HOST": "web-1"}

# What sized_caches fills in for one process with the default 1 worker, 1 thread.
DEFAULT_KWARGS = {
    "max_connections": 3,
    "timeout": defaults.POOL_TIMEOUT,
    "socket_timeout": defaults.SOCKET_TIMEOUT,
    "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
    "health_check_interval": defaults.HEALTH_CHECK_INTERVAL,
    "connhealth_retries": defaults.RETRIES,
    "connhealth_alias": "default",
    "connhealth_host": "web-1",
}
DEFAULT_SOURCES = {
    "max_connections": "derived",
    "timeout": "default",
    "socket_timeout": "default",
    "socket_connect_timeout": "default",
    "health_check_interval": "default",
    "retry": "default",
}


def redis_cache(location: Any = URL, **options: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"BACKEND": REDIS, "LOCATION": location}
    if options:
        config["OPTIONS"] = options
    return config


def sized_one(**options: Any) -> dict[str, Any]:
    """The OPTIONS ``sized_caches`` gives a single django-redis alias."""
    sized = sized_caches({"default": redis_cache(**options)}, environ=ENVIRON)
    result: dict[str, Any] = sized["default"]["OPTIONS"]
    return result


# ------------------------------------------------------------------ sized_caches


def test_sized_default_alias() -> None:
    caches = {"default": {"BACKEND": REDIS, "LOCATION": URL, "TIMEOUT": 300}}

    sized = sized_caches(caches, environ=ENVIRON)

    assert sized == {
        "default": {
            "BACKEND": REDIS,
            "LOCATION": URL,
            "TIMEOUT": 300,
            "OPTIONS": {
                "CONNECTION_POOL_CLASS": "django_connhealth.pool.SizedConnectionPool",
                "CONNECTION_FACTORY": "django_connhealth.factory.ConnectionFactory",
                "CONNECTION_POOL_KWARGS": DEFAULT_KWARGS,
                "CONNHEALTH": {
                    "concurrency": {
                        "workers": 1,
                        "threads": 1,
                        "worker_class": "sync",
                        "sources": {
                            "workers": "default",
                            "threads": "default",
                            "worker_class": "default",
                        },
                    },
                    "headroom": 2,
                    "sources": DEFAULT_SOURCES,
                },
            },
        }
    }


def test_returns_a_new_dict_and_leaves_input_untouched() -> None:
    options = {"CONNECTION_POOL_KWARGS": {"max_connections": 9}, "SOCKET_TIMEOUT": 3}
    caches = {"default": redis_cache(**options), "local": {"BACKEND": "x.LocMem"}}
    before = copy.deepcopy(caches)

    sized = sized_caches(caches, environ=ENVIRON)

    assert caches == before
    assert sized is not caches
    assert sized["default"] is not caches["default"]
    assert sized["default"]["OPTIONS"] is not caches["default"]["OPTIONS"]
    assert (
        sized["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]
        is not caches["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]
    )
    assert sized["local"] is not caches["local"]


def test_sized_again_is_stable() -> None:
    """Feeding the result back in changes nothing but reports the values as the user's."""
    once = sized_caches({"default": redis_cache()}, environ=ENVIRON)
    twice = sized_caches(once, environ=ENVIRON)
    assert twice["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"] == DEFAULT_KWARGS
    assert set(twice["default"]["OPTIONS"]["CONNHEALTH"]["sources"].values()) == {"OPTIONS"}


@pytest.mark.parametrize(
    "config",
    [
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "unique"},
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": URL,
            "OPTIONS": {"pool_class": "redis.BlockingConnectionPool", "max_connections": 4},
        },
        {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        {"BACKEND": "myapp.cache.django_redis.Thing", "LOCATION": URL},
    ],
)
def test_other_backends_pass_through(config: dict[str, Any]) -> None:
    before = copy.deepcopy(config)
    sized = sized_caches({"default": config, "redis": redis_cache()}, environ=ENVIRON)
    assert sized["default"] == before
    assert sized["redis"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["connhealth_alias"] == "redis"


@pytest.mark.parametrize(
    "options",
    [
        {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
            "SENTINELS": [("sentinel-1", 26379), ("sentinel-2", 26379)],
        },
        {"SENTINELS": [("sentinel-1", 26379)]},
        {"CLIENT_CLASS": "django_redis.client.SentinelClient"},
    ],
)
def test_sentinel_alias_passes_through(options: dict[str, Any]) -> None:
    config = redis_cache("redis://mymaster/0", **options)
    before = copy.deepcopy(config)
    assert sized_caches({"default": config}, environ=ENVIRON) == {"default": before}


@pytest.mark.parametrize("options", [None, {}, {"CONNECTION_POOL_KWARGS": None}])
def test_empty_options(options: dict[str, Any] | None) -> None:
    config: dict[str, Any] = {"BACKEND": REDIS, "LOCATION": URL, "OPTIONS": options}
    sized = sized_caches({"default": config}, environ=ENVIRON)
    assert sized["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"] == DEFAULT_KWARGS


RETRY = Retry(NoBackoff(), 1)


@pytest.mark.parametrize(
    ("options", "kwargs", "sources"),
    [
        (
            {"CONNECTION_POOL_KWARGS": {"max_connections": 50}},
            {**DEFAULT_KWARGS, "max_connections": 50},
            {**DEFAULT_SOURCES, "max_connections": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"timeout": 5}},
            {**DEFAULT_KWARGS, "timeout": 5},
            {**DEFAULT_SOURCES, "timeout": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"timeout": None}},
            {**DEFAULT_KWARGS, "timeout": None},
            {**DEFAULT_SOURCES, "timeout": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"socket_timeout": 3}},
            {**DEFAULT_KWARGS, "socket_timeout": 3},
            {**DEFAULT_SOURCES, "socket_timeout": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"socket_connect_timeout": 0.1}},
            {**DEFAULT_KWARGS, "socket_connect_timeout": 0.1},
            {**DEFAULT_SOURCES, "socket_connect_timeout": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"health_check_interval": 0}},
            {**DEFAULT_KWARGS, "health_check_interval": 0},
            {**DEFAULT_SOURCES, "health_check_interval": "OPTIONS"},
        ),
        (
            {"SOCKET_TIMEOUT": 3},
            {k: v for k, v in DEFAULT_KWARGS.items() if k != "socket_timeout"},
            {**DEFAULT_SOURCES, "socket_timeout": "OPTIONS"},
        ),
        (
            {"SOCKET_CONNECT_TIMEOUT": 0.2},
            {k: v for k, v in DEFAULT_KWARGS.items() if k != "socket_connect_timeout"},
            {**DEFAULT_SOURCES, "socket_connect_timeout": "OPTIONS"},
        ),
        (
            {"SOCKET_TIMEOUT": 3, "SOCKET_CONNECT_TIMEOUT": 0.2},
            {
                k: v
                for k, v in DEFAULT_KWARGS.items()
                if k not in {"socket_timeout", "socket_connect_timeout"}
            },
            {**DEFAULT_SOURCES, "socket_timeout": "OPTIONS", "socket_connect_timeout": "OPTIONS"},
        ),
        (
            # None is no value: django-redis ignores it, so the default is filled
            {"SOCKET_TIMEOUT": None},
            DEFAULT_KWARGS,
            DEFAULT_SOURCES,
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"retry": RETRY}},
            {
                **{k: v for k, v in DEFAULT_KWARGS.items() if k != "connhealth_retries"},
                "retry": RETRY,
            },
            {**DEFAULT_SOURCES, "retry": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"connhealth_retries": 0}},
            {**DEFAULT_KWARGS, "connhealth_retries": 0},
            {**DEFAULT_SOURCES, "retry": "OPTIONS"},
        ),
        (
            {"CONNECTION_POOL_KWARGS": {"ssl_cert_reqs": None, "max_connections": 7}},
            {**DEFAULT_KWARGS, "max_connections": 7, "ssl_cert_reqs": None},
            {**DEFAULT_SOURCES, "max_connections": "OPTIONS"},
        ),
    ],
)
def test_user_values_win(
    options: dict[str, Any], kwargs: dict[str, Any], sources: dict[str, str]
) -> None:
    sized = sized_one(**options)
    assert sized["CONNECTION_POOL_KWARGS"] == kwargs
    assert sized["CONNHEALTH"]["sources"] == sources
    for key, value in options.items():
        if key != "CONNECTION_POOL_KWARGS":
            assert sized[key] == value


@pytest.mark.parametrize(
    "pool_class_path",
    ["redis.connection.ConnectionPool", "redis.BlockingConnectionPool", "myapp.pools.Pool"],
)
def test_foreign_pool_class(pool_class_path: str) -> None:
    """A pool class of the user's may not accept our keywords, nor ``timeout``."""
    sized = sized_one(CONNECTION_POOL_CLASS=pool_class_path)
    assert sized["CONNECTION_POOL_CLASS"] == pool_class_path
    assert sized["CONNECTION_FACTORY"] == defaults.CONNECTION_FACTORY
    assert sized["CONNECTION_POOL_KWARGS"] == {
        "max_connections": 3,
        "socket_timeout": defaults.SOCKET_TIMEOUT,
        "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
        "health_check_interval": defaults.HEALTH_CHECK_INTERVAL,
    }
    assert sized["CONNHEALTH"]["sources"] == {
        "max_connections": "derived",
        "socket_timeout": "default",
        "socket_connect_timeout": "default",
        "health_check_interval": "default",
    }


def test_foreign_pool_class_keeps_user_timeout() -> None:
    sized = sized_one(
        CONNECTION_POOL_CLASS="redis.BlockingConnectionPool",
        CONNECTION_POOL_KWARGS={"timeout": 4, "max_connections": 10},
    )
    assert sized["CONNECTION_POOL_KWARGS"]["timeout"] == 4
    assert sized["CONNECTION_POOL_KWARGS"]["max_connections"] == 10
    assert sized["CONNHEALTH"]["sources"]["timeout"] == "OPTIONS"
    assert "retry" not in sized["CONNHEALTH"]["sources"]


def test_connection_factory_kept() -> None:
    sized = sized_one(CONNECTION_FACTORY="myapp.factory.Factory")
    assert sized["CONNECTION_FACTORY"] == "myapp.factory.Factory"
    assert sized["CONNECTION_POOL_CLASS"] == defaults.POOL_CLASS
    assert sized["CONNECTION_POOL_KWARGS"] == DEFAULT_KWARGS


def test_other_options_kept() -> None:
    options = {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "PASSWORD": "secret",
        "IGNORE_EXCEPTIONS": True,
        "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
    }
    sized = sized_one(**options)
    assert {key: sized[key] for key in options} == options


def test_sizes_from_the_environment() -> None:
    environ = {**ENVIRON, "CONNHEALTH_THREADS": "8", "CONNHEALTH_POOL_HEADROOM": "4"}
    sized = sized_caches({"default": redis_cache()}, environ=environ)
    assert sized["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["max_connections"] == 12


@pytest.mark.parametrize(
    ("environ", "host"),
    [
        ({"CONNHEALTH_HOST": "web-1"}, "web-1"),
        ({"CONNHEALTH_HOST": "  pod 7:abc  "}, "pod_7_abc"),
        ({"CONNHEALTH_HOST": "ünï"}, "_n_"),
    ],
)
def test_connhealth_host(environ: dict[str, str], host: str) -> None:
    sized = sized_caches({"default": redis_cache()}, environ=environ)
    assert sized["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["connhealth_host"] == host


# ------------------------------------------------------- aliases sharing a server


def alias_names(sized: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {
        alias: config["OPTIONS"]["CONNECTION_POOL_KWARGS"]["connhealth_alias"]
        for alias, config in sized.items()
        if "OPTIONS" in config and "CONNECTION_POOL_KWARGS" in config["OPTIONS"]
    }


def test_aliases_with_one_location_share_the_first_name() -> None:
    caches = {
        "default": redis_cache(URL),
        "sessions": redis_cache(URL, CONNECTION_POOL_KWARGS={"max_connections": 4}),
        "other": redis_cache("redis://cache.internal:6379/1"),
        "again": redis_cache(URL),
    }
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {
        "default": "default",
        "sessions": "default",
        "other": "other",
        "again": "default",
    }


@pytest.mark.parametrize(
    "location",
    [
        ["redis://primary:6379/0", "redis://replica:6379/0"],
        ("redis://primary:6379/0", "redis://replica:6379/0"),
        "redis://primary:6379/0,redis://replica:6379/0",
    ],
)
def test_location_list_and_comma_string(location: Any) -> None:
    caches = {
        "main": redis_cache(location),
        "primary": redis_cache("redis://primary:6379/0"),
        "replica": redis_cache("redis://replica:6379/0"),
    }
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {
        "main": "main",
        "primary": "main",
        "replica": "main",
    }


def test_first_alias_in_order_names_the_pool() -> None:
    caches = {
        "replica": redis_cache("redis://replica:6379/0"),
        "main": redis_cache(["redis://primary:6379/0", "redis://replica:6379/0"]),
    }
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {
        "replica": "replica",
        "main": "main",
    }


def test_only_django_redis_aliases_name_a_pool() -> None:
    caches = {
        "builtin": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL},
        "default": redis_cache(URL),
    }
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {"default": "default"}


def test_alias_without_location() -> None:
    caches = {"default": {"BACKEND": REDIS}, "blank": redis_cache("")}
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {
        "default": "default",
        "blank": "blank",
    }


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (URL, [URL]),
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


# ----------------------------------------------------------------- pool_config

QUERY_URL = "redis://cache.internal:6379/0?max_connections=5&socket_timeout=3"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (QUERY_URL, {"max_connections": "5", "socket_timeout": "3"}),
        (URL, {}),
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


def redis_py_default(name: str) -> Any:
    return inspect.signature(AbstractConnection.__init__).parameters[name].default


def test_pool_config_redis_py_defaults() -> None:
    """Nothing set: redis-py's own defaults (whatever this redis-py version's are)."""
    config = pool_config({}, URL)

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
    config = pool_config({"CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool"}, URL)
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
    config = pool_config(options, URL)
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
    config = pool_config(options, URL)

    assert config.values["socket_timeout"] == socket_timeout
    assert config.sources["socket_timeout"] == source
    connect_timeout = redis_py_default("socket_connect_timeout")
    if connect_timeout is None:
        assert config.values["socket_connect_timeout"] == socket_timeout
        assert config.sources["socket_connect_timeout"] == source
    else:
        assert config.values["socket_connect_timeout"] == connect_timeout
        assert config.sources["socket_connect_timeout"] == "redis-py"


def test_pool_config_connect_timeout_from_location_is_not_replaced() -> None:
    config = pool_config({"SOCKET_TIMEOUT": 3}, "redis://h/0?socket_connect_timeout=0.5")
    assert config.values["socket_connect_timeout"] == 0.5
    assert config.sources["socket_connect_timeout"] == "LOCATION"


@pytest.mark.parametrize("value", [0, None])
def test_pool_config_false_option_ignored_as_django_redis_does(value: float | None) -> None:
    config = pool_config({"SOCKET_TIMEOUT": value}, URL)
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
    config = pool_config(options, URL)
    assert config.values["max_connections"] == ConnectionPool(max_connections=None).max_connections
    assert config.sources["max_connections"] == "OPTIONS"


def test_pool_config_connect_timeout_none_falls_back_to_socket_timeout() -> None:
    options = {"CONNECTION_POOL_KWARGS": {"socket_timeout": 4, "socket_connect_timeout": None}}
    config = pool_config(options, URL)
    assert config.values["socket_connect_timeout"] == 4
    assert config.sources["socket_connect_timeout"] == "OPTIONS"


def test_pool_config_user_kwargs_without_report() -> None:
    """Pool kwargs the user wrote (no CONNHEALTH report) are reported as OPTIONS."""
    options = {
        "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
        "CONNECTION_POOL_KWARGS": {"max_connections": 12, "timeout": 1.5},
    }
    config = pool_config(options, URL)
    assert (config.values["max_connections"], config.values["timeout"]) == (12, 1.5)
    assert config.sources["max_connections"] == config.sources["timeout"] == "OPTIONS"


def test_pool_config_reports_what_sized_caches_recorded() -> None:
    options = sized_one(CONNECTION_POOL_KWARGS={"max_connections": 9})
    config = pool_config(options, URL)
    assert config.sources == {
        "max_connections": "OPTIONS",
        "timeout": "default",
        "socket_timeout": "default",
        "socket_connect_timeout": "default",
        "health_check_interval": "default",
    }


def test_pool_config_unimportable_pool_class() -> None:
    config = pool_config({"CONNECTION_POOL_CLASS": "connhealth_no_such.Pool"}, URL)
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


def test_pool_config_as_dict_redacts() -> None:
    config = pool_config({}, "redis://:hunter2@h:6379/0?max_connections=4")
    assert config.location == "redis://:***@h:6379/0?max_connections=4"
    rendered = config.as_dict()
    assert rendered["location"] == "redis://:***@h:6379/0?max_connections=4"
    assert rendered["max_connections"] == 4
    assert rendered["sources"]["max_connections"] == "LOCATION"
    assert "hunter2" not in repr(rendered)
    assert isinstance(config, PoolConfig)


# ----------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("host", "pid", "alias", "name", "parsed"),
    [
        ("web-1", 42, "default", "connhealth:web-1:42:default", ("web-1", 42, "default")),
        ("web 1", 7, "my cache", "connhealth:web_1:7:my_cache", ("web_1", 7, "my_cache")),
        ("héte", 1, "dëfault", "connhealth:h_te:1:d_fault", ("h_te", 1, "d_fault")),
        ("a\tb\nc\x00", 1, "x\x7fy", "connhealth:a_b_c_:1:x_y", ("a_b_c_", 1, "x_y")),
        ("[::1]", 9, "a:b:c", "connhealth:[__1]:9:a:b:c", ("[__1]", 9, "a:b:c")),
        ("h", 0, "", "connhealth:h:0:", ("h", 0, "")),
        ("", 5, "x", "connhealth::5:x", ("", 5, "x")),
    ],
)
def test_client_name(
    host: str, pid: int, alias: str, name: str, parsed: tuple[str, int, str]
) -> None:
    assert client_name(host, pid, alias) == name
    assert parse_client_name(name) == ClientName(*parsed)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "connhealth",
        "connhealth:h:1",
        "connhealth:h:x:default",
        "connhealth:h:-1:default",
        "connhealth:h::default",
        "connhealth:h:²:default",  # str.isdigit() is true, int() refuses it
        "connhealth:h:٣:default",
        "connhealth:h: 1:default",
        "other:h:1:default",
        "CONNHEALTH:h:1:default",
        "django-redis",
    ],
)
def test_parse_client_name_refuses_other_names(name: str) -> None:
    assert parse_client_name(name) is None


@pytest.mark.parametrize(
    ("environ", "host"),
    [
        ({"CONNHEALTH_HOST": "web-1"}, "web-1"),
        ({"CONNHEALTH_HOST": " web-1\n"}, "web-1"),
        ({"CONNHEALTH_HOST": "10.0.0.1:8000"}, "10.0.0.1_8000"),
        ({"CONNHEALTH_HOST": "pod name"}, "pod_name"),
    ],
)
def test_client_host(environ: dict[str, str], host: str) -> None:
    assert client_host(environ) == host


@pytest.mark.parametrize("environ", [{}, {"CONNHEALTH_HOST": ""}, {"CONNHEALTH_HOST": "   "}])
def test_client_host_defaults_to_hostname(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box 1:x")
    assert client_host(environ) == "box_1_x"


def test_client_host_never_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert client_host({}) == "unknown"


def is_valid_name(name: str) -> bool:
    return bool(name) and all("!" <= char <= "~" for char in name)


@PROPERTY
@given(host=st.text(), pid=st.integers(min_value=0, max_value=2**22), alias=st.text())
def test_client_name_any_text(host: str, pid: int, alias: str) -> None:
    name = client_name(host, pid, alias)

    assert is_valid_name(name)
    parsed = parse_client_name(name)
    assert parsed is not None
    assert parsed.pid == pid
    assert ":" not in parsed.host
    assert len(parsed.host) == len(host)
    assert len(parsed.alias) == len(alias)
    # names already valid come back unchanged
    assert client_name(parsed.host, parsed.pid, parsed.alias) == name


@PROPERTY
@given(environ=st.dictionaries(st.just("CONNHEALTH_HOST"), st.text()))
def test_client_host_any_text(environ: dict[str, str]) -> None:
    host = client_host(environ)
    assert is_valid_name(host)
    assert ":" not in host


@PROPERTY
@given(name=st.text())
def test_parse_client_name_never_raises(name: str) -> None:
    parsed = parse_client_name(name)
    if parsed is not None:
        assert name.startswith("connhealth:")
        assert parsed.pid >= 0


# ----------------------------------------------------------------------- redact


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:secret@h/0", "redis://user:***@h/0"),
        ("redis://user:@h/0", "redis://user:***@h/0"),
        ("rediss://:secret@h:6380/0", "rediss://:***@h:6380/0"),
        (
            "rediss://default:s%40cr%3At@cache.example.com:6380/2",
            "rediss://default:***@cache.example.com:6380/2",
        ),
        ("unix://:secret@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        ("unix:///tmp/r.sock?db=1&password=secret", "unix:///tmp/r.sock?db=1&password=***"),
        ("redis://h:6379/0?password=secret", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&PASSWORD=secret&x=1", "redis://h/0?db=1&PASSWORD=***&x=1"),
        ("redis://h/0?auth=secret", "redis://h/0?auth=***"),
        ("redis://h/0?pass=secret", "redis://h/0?pass=***"),
        ("redis://h/0?passwords=1", "redis://h/0?passwords=1"),
        ("redis://secret@h/0", "redis://***@h/0"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://h", "redis://h"),
        ("http://user@h/", "http://user@h/"),
        ("redis://:secret@h:abc/0", "***"),
        ("redis://:secret@h:99999/0", "***"),
        ("redis://:secret@[::1/0", "***"),
        ("unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock?db=1"),
        ("UNIX:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("redis:///0?password=x", "redis:///0?password=***"),
        ("file:///tmp/x", "file:///tmp/x"),
        ("1://x", "1://x"),
        ("unix:/tmp/r.sock", "unix:/tmp/r.sock"),
        ("/tmp/r.sock", "/tmp/r.sock"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


URL_TEMPLATES = (
    "redis://:{p}@cache.internal:6379/0",
    "redis://user:{p}@cache.internal/0",
    "rediss://default:{p}@cache.internal:6380/1?ssl_cert_reqs=none",
    "unix://:{p}@/tmp/r.sock?db=1",
    "redis://cache.internal:6379/0?password={p}",
    "unix:///tmp/r.sock?db=1&password={p}",
    "redis://{p}@cache.internal:6379/0",
)


@PROPERTY
@given(template=st.sampled_from(URL_TEMPLATES), password=st.text(min_size=3))
def test_redacted_url_never_contains_the_password(template: str, password: str) -> None:
    quoted = quote(password, safe="")
    rest = template.replace("{p}", "")
    assume(password not in rest and quoted not in rest)
    assume(password not in "***" and quoted not in "***")

    redacted = redact_url(template.replace("{p}", quoted))

    assert password not in redacted
    assert quoted not in redacted
    assert redacted == redact_url(template.replace("{p}", "x"))


@PROPERTY
@given(url=st.text())
def test_redact_url_any_text(url: str) -> None:
    redacted = redact_url(url)
    assert isinstance(redacted, str)
    assert redact_url(redacted) == redacted
