"""The pool configuration a django-redis alias really runs with, and its sources.

django-redis merges three layers for each server URL: OPTIONS (``SOCKET_TIMEOUT``
and friends), ``CONNECTION_POOL_KWARGS``, then the URL's query string, which
wins. redis-py's own defaults fill the rest. The checks, the health detail and
the command all read the result from here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string
from redis.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool

from django_connhealth import defaults
from django_connhealth.caches import location_query
from django_connhealth.redact import redact_url

if TYPE_CHECKING:
    from collections.abc import Mapping

# (pool keyword, django-redis OPTIONS key that sets it too, parser for the URL query)
KEYS: tuple[tuple[str, str | None, type], ...] = (
    ("max_connections", None, int),
    ("timeout", None, float),
    ("socket_timeout", "SOCKET_TIMEOUT", float),
    ("socket_connect_timeout", "SOCKET_CONNECT_TIMEOUT", float),
    ("health_check_interval", None, int),
)


@dataclass(frozen=True)
class PoolConfig:
    """The effective settings of one server URL of an alias."""

    url: str
    pool_class: type[ConnectionPool] | None
    values: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return redact_url(self.url)

    @property
    def blocking(self) -> bool:
        return self.pool_class is not None and issubclass(self.pool_class, BlockingConnectionPool)

    def as_dict(self) -> dict[str, Any]:
        return {"location": self.location, **self.values, "sources": dict(self.sources)}


@cache
def _pool_defaults(pool_class: type[ConnectionPool]) -> dict[str, Any]:
    try:
        pool = pool_class()
        # Asked of the base class: a blocking pool fills its queue at creation, and
        # redis-py < 8 reads None as 2**31 slots, so that pool would never be built.
        unset = ConnectionPool(max_connections=None)
    except Exception:  # a pool class of the user's that needs arguments
        return {}
    params = inspect.signature(AbstractConnection.__init__).parameters
    socket_timeout = params["socket_timeout"].default
    return {
        "max_connections": pool.max_connections,
        "max_connections_unset": unset.max_connections,
        "timeout": getattr(pool, "timeout", None),
        "socket_timeout": socket_timeout,
        # redis-py falls back to socket_timeout when no connect timeout is set
        "socket_connect_timeout": params["socket_connect_timeout"].default,
        "health_check_interval": params["health_check_interval"].default,
    }


def pool_class(options: Mapping[str, Any]) -> type[ConnectionPool] | None:
    """The pool class an alias uses, or ``None`` when it cannot be imported."""
    path = options.get("CONNECTION_POOL_CLASS", "redis.connection.ConnectionPool")
    try:
        cls = import_string(path)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, ConnectionPool) else None


def pool_config(options: Mapping[str, Any], url: str) -> PoolConfig:
    """Effective settings for ``url`` under an alias's ``OPTIONS``."""
    kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
    recorded = (options.get(defaults.OPTIONS_KEY) or {}).get("sources", {})
    query = location_query(url)
    cls = pool_class(options)
    fallback = _pool_defaults(cls) if cls is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, option, parse in KEYS:
        if key == "timeout" and cls is not None and not issubclass(cls, BlockingConnectionPool):
            continue
        if key in query:
            try:
                values[key] = parse(query[key])
            except ValueError:
                values[key] = query[key]
            sources[key] = "LOCATION"
        elif key in kwargs:
            values[key] = kwargs[key]
            sources[key] = recorded.get(key, "OPTIONS")
        elif option and options.get(option):
            # django-redis ignores a false value here (0, None)
            values[key] = options[option]
            sources[key] = "OPTIONS"
        else:
            values[key] = fallback.get(key)
            sources[key] = "redis-py"
    if values.get("socket_connect_timeout") is None:
        # redis-py connects with the socket timeout when no connect timeout is set
        values["socket_connect_timeout"] = values["socket_timeout"]
        sources["socket_connect_timeout"] = sources["socket_timeout"]
    if "max_connections" in values and not values["max_connections"]:
        # redis-py reads a false max_connections (None, 0) as its own default
        values["max_connections"] = fallback.get("max_connections_unset")
    return PoolConfig(url, cls, values, sources)
