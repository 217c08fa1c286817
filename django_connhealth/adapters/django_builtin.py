"""Django's built-in ``django.core.cache.backends.redis.RedisCache``.

Django builds one pool per server for each ``RedisCacheClient``, and since
``caches`` is per thread, each thread of a process gets its own pools: a
``max_connections`` there caps a thread, not the process. Sizing installs
:class:`SharedSizedPool`, whose ``from_url`` hands every thread the same sized
pool for a server and alias, and fills the pool keywords (this backend's
OPTIONS are the pool's keyword arguments) the user did not set.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.cache.backends.redis import RedisCache
from django.core.checks import Warning
from redis import Redis

from django_connhealth import defaults
from django_connhealth.adapters.base import Adapter, AliasPool
from django_connhealth.adapters.django_redis import location_query
from django_connhealth.adapters.filling import (
    fill_pool_kwargs,
    pool_host,
    pool_name,
    sizing_record,
)
from django_connhealth.knobs import set_by_user
from django_connhealth.pool import SizedConnectionPool
from django_connhealth.poolconfig import PoolConfig, import_pool_class, read_back
from django_connhealth.redact import secrets_of
from django_connhealth.shared import SharedPools

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from django.core.checks import CheckMessage
    from redis import ConnectionPool

    from django_connhealth.adapters.base import SizingPlan

SHARED_POOL_CLASS = "django_connhealth.adapters.django_builtin.SharedSizedPool"
#: OPTIONS keys Django's client takes for itself; the rest go to the pool.
CLIENT_OPTIONS = ("pool_class", "parser_class", "serializer", defaults.OPTIONS_KEY)


class SharedSizedPool(SizedConnectionPool):
    """A sized pool that ``from_url`` shares between every thread of the process."""

    shared: ClassVar[SharedPools[SharedSizedPool]] = SharedPools()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SharedSizedPool:
        kwargs.pop(defaults.OPTIONS_KEY, None)  # the sizing record, not a pool keyword
        # Other options (a test's override_settings) are another pool.
        key = (url, repr(sorted(kwargs.items())))
        return cls.shared.get(key, lambda: super(SharedSizedPool, cls).from_url(url, **kwargs))


def servers(config: Mapping[str, Any]) -> list[str]:
    """The server URLs of a cache, split the way Django splits LOCATION."""
    location = config.get("LOCATION", "")
    if isinstance(location, str):
        return [url for url in re.split("[;,]", location) if url]
    return [str(url) for url in location]


def _options(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(config.get("OPTIONS") or {})


def _pool_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key not in CLIENT_OPTIONS}


def _pool_class(options: Mapping[str, Any]) -> type[ConnectionPool] | None:
    chosen = options.get("pool_class") or "redis.connection.ConnectionPool"
    return import_pool_class(chosen) if isinstance(chosen, str) else chosen


class DjangoBuiltinAdapter(Adapter):
    """``django.core.cache.backends.redis.RedisCache``, one URL or a list."""

    def handles(self, config: Mapping[str, Any]) -> bool:
        return config.get("BACKEND") == defaults.DJANGO_BUILTIN_REDIS_BACKEND

    def size(self, alias: str, config: Mapping[str, Any], plan: SizingPlan) -> dict[str, Any]:
        options = _options(config)
        if "pool_class" in options:
            return dict(config)  # a pool class of the user's: its keywords are its own
        options["pool_class"] = SHARED_POOL_CLASS
        sources = fill_pool_kwargs(
            options,
            plan,
            name=alias,
            ours=True,
            set_by_user=lambda knob: set_by_user(knob, {}, options),
        )
        options[defaults.OPTIONS_KEY] = sizing_record(plan, sources)
        return {**config, "OPTIONS": options}

    def is_sized(self, config: Mapping[str, Any]) -> bool:
        return defaults.OPTIONS_KEY in _options(config)

    def pool_name(self, alias: str, config: Mapping[str, Any]) -> str:
        return pool_name(_options(config), alias)

    def pool_host(self, config: Mapping[str, Any]) -> str | None:
        return pool_host(_options(config))

    def pool_configs(self, config: Mapping[str, Any]) -> list[PoolConfig]:
        options = _options(config)
        recorded = (options.get(defaults.OPTIONS_KEY) or {}).get("sources", {})
        return [
            read_back(
                url,
                _pool_class(options),
                query=location_query(url),
                kwargs=_pool_kwargs(options),
                options={},
                recorded=recorded,
            )
            for url in servers(config)
        ]

    def alias_pools(self, alias: str, config: Mapping[str, Any]) -> list[AliasPool]:
        # Django's own client, so the pools come from the same class with the same
        # options: for a sized alias, the very pools every thread's cache uses.
        client: Any = RedisCache(config.get("LOCATION", ""), dict(config))._cache
        secret = {"PASSWORD": _options(config).get("password")}
        return [
            AliasPool(
                alias,
                url,
                Redis(connection_pool=client._pool_class.from_url(url, **client._pool_options)),
                secrets_of(url, secret),
            )
            for url in client._servers
        ]

    def check(self, alias: str, config: Mapping[str, Any]) -> Iterator[CheckMessage]:
        if not self.is_sized(config):
            yield Warning(
                f"CACHES[{alias!r}] uses Django's built-in RedisCache unsized: its pools are "
                f"per thread, so max_connections cannot bound a process.",
                hint="Wrap CACHES with django_connhealth.sized_caches(), which gives it one "
                "pool per server per process (and no pool_class of your own).",
                id="connhealth.W008",
            )


adapter = DjangoBuiltinAdapter()
