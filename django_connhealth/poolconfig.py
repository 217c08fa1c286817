"""The settings a pool really runs with, and where each came from.

A backend merges layers for each server URL (for django-redis: OPTIONS keys
such as ``SOCKET_TIMEOUT``, then ``CONNECTION_POOL_KWARGS``, then the URL's
query string, which wins); redis-py's own defaults fill the rest. Each
adapter hands its layers to :func:`read_back`, which walks the knob table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string
from redis.connection import BlockingConnectionPool, ConnectionPool
from redis.sentinel import SentinelConnectionPool

from django_connhealth import defaults
from django_connhealth.knobs import KNOBS, set_by_user
from django_connhealth.redact import redact_url
from django_connhealth.redispy import connection_defaults

if TYPE_CHECKING:
    from collections.abc import Mapping


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
def pool_defaults(pool_class: type[ConnectionPool]) -> dict[str, Any]:
    """redis-py's defaults for a pool of ``pool_class`` ({} if it needs arguments).

    A Sentinel pool, which needs its sentinels to be built, has the defaults
    of the pool it is built on.
    """
    if issubclass(pool_class, SentinelConnectionPool):
        blocking = issubclass(pool_class, BlockingConnectionPool)
        return pool_defaults(BlockingConnectionPool if blocking else ConnectionPool)
    try:
        pool = pool_class()
        # Asked of the base class: a blocking pool fills its queue at creation, and
        # redis-py < 8 reads None as 2**31 slots, so that pool would never be built.
        unset = ConnectionPool(max_connections=None)
    except Exception:  # a pool class of the user's that needs arguments
        return {}
    return {
        "max_connections": pool.max_connections,
        "max_connections_unset": unset.max_connections,
        "timeout": getattr(pool, "timeout", None),
        **connection_defaults(),
    }


def import_pool_class(path: str) -> type[ConnectionPool] | None:
    """The pool class at dotted ``path``, or ``None`` when it is not one or cannot be imported."""
    try:
        cls = import_string(path)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, ConnectionPool) else None


def read_back(
    url: str,
    cls: type[ConnectionPool] | None,
    *,
    query: Mapping[str, str],
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any],
    recorded: Mapping[str, str],
) -> PoolConfig:
    """Effective settings for ``url``: the query string, then ``kwargs``, then ``options``.

    ``recorded`` holds the sources ``sized_caches()`` wrote down for the
    keywords it filled. A knob only a blocking pool takes is left out for
    another pool class.
    """
    fallback = pool_defaults(cls) if cls is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for knob in KNOBS:
        key = knob.kwarg
        if (
            knob.pools == "blocking"
            and cls is not None
            and not issubclass(cls, BlockingConnectionPool)
        ):
            continue
        if key in query:
            try:
                values[key] = knob.parse(query[key])
            except ValueError:
                values[key] = query[key]
            sources[key] = "LOCATION"
        elif set_by_user(knob, options, kwargs):
            values[key] = kwargs[key] if key in kwargs else options[knob.option]  # type: ignore[index]
            sources[key] = recorded.get(key, "OPTIONS") if key in kwargs else "OPTIONS"
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


def is_unbounded(size: object) -> bool:
    """Whether a pool of ``max_connections=size`` has no real bound."""
    return size is None or (isinstance(size, (int, float)) and size >= defaults.UNBOUNDED)
