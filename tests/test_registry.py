"""``django_connhealth.adapters.registry``: which adapter speaks for an alias, and what
readiness says of a Redis-backed alias none does. No Redis needed.
"""

from __future__ import annotations

import pytest

from django_connhealth.adapters import django_builtin, django_redis, django_redis_sentinel
from django_connhealth.adapters.registry import adapter_for, is_redis_backed, unchecked_reason

SENTINEL = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://mymaster/0",
    "OPTIONS": {"SENTINELS": [("127.0.0.1", 26379)]},
}


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("django_redis.cache.RedisCache", django_redis.adapter),
        ("django.core.cache.backends.redis.RedisCache", django_builtin.adapter),
        ("django.core.cache.backends.locmem.LocMemCache", None),
        ("tests.helpers.OtherRedisCache", None),
    ],
)
def test_adapter_for(backend: str, expected: object) -> None:
    assert adapter_for({"BACKEND": backend}) is expected


@pytest.mark.parametrize(
    "options",
    [
        {"SENTINELS": [("127.0.0.1", 26379)]},
        {"CLIENT_CLASS": "django_redis.client.SentinelClient"},
    ],
)
def test_sentinel_aliases_have_their_adapter(options: dict[str, object]) -> None:
    config = {**SENTINEL, "OPTIONS": options}
    assert adapter_for(config) is django_redis_sentinel.adapter
    assert is_redis_backed(config)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            {"BACKEND": "tests.helpers.OtherRedisCache"},
            "not checked: the cache backend 'tests.helpers.OtherRedisCache' is not supported yet",
        ),
        (
            {"BACKEND": "django_valkey.cache.ValkeyCache"},  # not installed: named, not imported
            "not checked: the cache backend 'django_valkey.cache.ValkeyCache' is not supported yet",
        ),
        ({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, None),
        ({"BACKEND": "no.such.Backend"}, None),
    ],
)
def test_unchecked_reason(config: dict[str, object], reason: str | None) -> None:
    assert unchecked_reason(config) == reason
    assert adapter_for(config) is None
    assert is_redis_backed(config) is (reason is not None)
