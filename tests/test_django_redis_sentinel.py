"""``django_connhealth.adapters.django_redis_sentinel``: sizing a Sentinel alias. No Redis needed.

Its pools on a real Sentinel set are in test_sentinel.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from django_connhealth import defaults, sized_caches
from django_connhealth.adapters.django_redis_sentinel import adapter

ENVIRON = {"CONNHEALTH_THREADS": "5"}
SENTINELS = [("sentinel-1", 26379), ("sentinel-2", 26379)]
LOCATION = "redis://mymaster/0"


def sentinel_alias(location: Any = LOCATION, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "OPTIONS": {"SENTINELS": SENTINELS, **options},
    }


def sized_options(config: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = sized_caches({"default": config}, environ=ENVIRON)["default"][
        "OPTIONS"
    ]
    return options


@pytest.mark.parametrize(
    "given",
    [
        {},
        # as django-redis's docs write it: its own defaults, named
        {
            "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        },
    ],
    ids=["unset", "django-redis's own named"],
)
def test_sizing_installs_the_sentinel_pool_and_factory(given: dict[str, Any]) -> None:
    config = sentinel_alias(CLIENT_CLASS="django_redis.client.SentinelClient", **given)
    before = copy.deepcopy(config)
    options = sized_options(config)
    assert config == before  # not mutated
    assert options["CONNECTION_POOL_CLASS"] == "django_connhealth.sentinel.SizedSentinelPool"
    assert options["CONNECTION_FACTORY"] == "django_connhealth.factory.SentinelConnectionFactory"
    kwargs = options["CONNECTION_POOL_KWARGS"]
    assert kwargs["max_connections"] == 5 + defaults.POOL_HEADROOM
    assert kwargs["timeout"] == defaults.POOL_TIMEOUT
    assert kwargs["connhealth_alias"] == "default"
    assert options["CONNHEALTH"]["sources"]["max_connections"] == "derived"
    sentinel_kwargs = options["SENTINEL_KWARGS"]
    assert sentinel_kwargs["socket_timeout"] == defaults.SOCKET_TIMEOUT
    assert sentinel_kwargs["socket_connect_timeout"] == defaults.SOCKET_CONNECT_TIMEOUT
    retry = sentinel_kwargs["retry"]
    assert isinstance(retry, Retry)
    attempts: list[int] = []

    def refused() -> None:
        attempts.append(1)
        raise RedisConnectionError("refused")

    with pytest.raises(RedisConnectionError):
        retry.call_with_retry(refused, lambda error: None)
    assert len(attempts) == 1  # a dead sentinel: the next one, at once


def test_a_pool_class_and_factory_of_the_users_are_kept() -> None:
    options = sized_options(
        sentinel_alias(
            CONNECTION_POOL_CLASS="tests.helpers.PlainSentinelPool",
            CONNECTION_FACTORY="tests.helpers.OtherSentinelFactory",
        )
    )
    assert options["CONNECTION_POOL_CLASS"] == "tests.helpers.PlainSentinelPool"
    assert options["CONNECTION_FACTORY"] == "tests.helpers.OtherSentinelFactory"
    # a plain pool takes no blocking pool's keywords, nor this app's
    assert "timeout" not in options["CONNECTION_POOL_KWARGS"]
    assert "connhealth_alias" not in options["CONNECTION_POOL_KWARGS"]


def test_sentinel_kwargs_of_the_users_win_and_timeouts_follow_the_pools() -> None:
    retry = Retry(NoBackoff(), 3)
    options = sized_options(
        sentinel_alias(
            SOCKET_TIMEOUT=0.3,
            CONNECTION_POOL_KWARGS={"socket_connect_timeout": 0.2},
            SENTINEL_KWARGS={"password": "s3ntinel", "retry": retry},
        )
    )
    assert options["SENTINEL_KWARGS"] == {
        "password": "s3ntinel",
        "retry": retry,
        "socket_timeout": 0.3,
        "socket_connect_timeout": 0.2,
    }


@pytest.mark.parametrize(
    ("config", "urls"),
    [
        (
            sentinel_alias(CLIENT_CLASS="django_redis.client.SentinelClient"),
            ["redis://mymaster/0?is_master=1", "redis://mymaster/0?is_master=0"],
        ),
        (
            sentinel_alias(
                "redis://mymaster/2?is_master=0&ssl_cert_reqs=none",
                CLIENT_CLASS="django_redis.client.SentinelClient",
            ),
            [
                "redis://mymaster/2?is_master=1&ssl_cert_reqs=none",
                "redis://mymaster/2?is_master=0&ssl_cert_reqs=none",
            ],
        ),
        (sentinel_alias(), [LOCATION]),
        (
            sentinel_alias(["redis://mymaster/0", "redis://mymaster/0?is_master=0"]),
            ["redis://mymaster/0", "redis://mymaster/0?is_master=0"],
        ),
    ],
    ids=["SentinelClient", "SentinelClient with a query", "master only", "a list"],
)
def test_urls_are_those_the_client_asks_its_factory_for(
    config: dict[str, Any], urls: list[str]
) -> None:
    assert adapter.urls(config) == urls
    assert [pool.url for pool in adapter.pool_configs(config)] == urls


def test_secrets_include_the_sentinels_password() -> None:
    options = {"PASSWORD": "data-pass", "SENTINEL_KWARGS": {"password": "sentinel-pass"}}
    assert set(adapter.secrets("redis://:url-pass@mymaster/0", options)) == {
        "data-pass",
        "url-pass",
        "sentinel-pass",
    }


def test_unsized_pools_read_back_with_redis_py_defaults() -> None:
    """redis-py's Sentinel pool needs its sentinels to be built: the defaults of its base."""
    [config] = adapter.pool_configs(sentinel_alias())
    assert config.pool_class is not None
    assert config.pool_class.__name__ == "SentinelConnectionPool"
    assert not config.blocking
    assert config.sources["max_connections"] == "redis-py"
    assert config.values["max_connections"] is not None
