"""``sized_caches`` (``django_connhealth.caches``): what it fills in, keeps and passes through;
no Redis needed.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.caches import sized_caches
from tests.helpers import CACHE_URL, DJANGO_REDIS, ENVIRON, redis_cache, sized_one

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


# ------------------------------------------------------------------ sized_caches


def test_sized_default_alias() -> None:
    caches = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": CACHE_URL, "TIMEOUT": 300}}

    sized = sized_caches(caches, environ=ENVIRON)

    assert sized == {
        "default": {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": CACHE_URL,
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
                        "role": "other",
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
            "LOCATION": CACHE_URL,
            "OPTIONS": {"pool_class": "redis.BlockingConnectionPool", "max_connections": 4},
        },
        {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        {"BACKEND": "myapp.cache.django_redis.Thing", "LOCATION": CACHE_URL},
    ],
)
def test_other_backends_pass_through(config: dict[str, Any]) -> None:
    before = copy.deepcopy(config)
    sized = sized_caches({"default": config, "redis": redis_cache()}, environ=ENVIRON)
    assert sized["default"] == before
    assert sized["redis"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["connhealth_alias"] == "redis"


@pytest.mark.parametrize("options", [None, {}, {"CONNECTION_POOL_KWARGS": None}])
def test_empty_options(options: dict[str, Any] | None) -> None:
    config: dict[str, Any] = {"BACKEND": DJANGO_REDIS, "LOCATION": CACHE_URL, "OPTIONS": options}
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
        "default": redis_cache(CACHE_URL),
        "sessions": redis_cache(CACHE_URL, CONNECTION_POOL_KWARGS={"max_connections": 4}),
        "other": redis_cache("redis://cache.internal:6379/1"),
        "again": redis_cache(CACHE_URL),
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
        "builtin": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
        },
        "default": redis_cache(CACHE_URL),
    }
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {"default": "default"}


def test_alias_without_location() -> None:
    caches = {"default": {"BACKEND": DJANGO_REDIS}, "blank": redis_cache("")}
    assert alias_names(sized_caches(caches, environ=ENVIRON)) == {
        "default": "default",
        "blank": "blank",
    }
