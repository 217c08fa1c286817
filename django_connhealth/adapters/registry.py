"""The adapters, and the lookups that loop over them.

Sizing, readiness, the checks and the report find a CACHES entry's adapter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_connhealth.adapters import django_builtin, django_redis, django_redis_sentinel
from django_connhealth.adapters.base import Unpinged

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django_connhealth.adapters.base import Adapter, AliasPool

#: In the order they are asked; the first that handles a CACHES entry speaks for it.
ADAPTERS: tuple[Adapter, ...] = (
    django_redis.adapter,
    django_redis_sentinel.adapter,
    django_builtin.adapter,
)


def adapter_for(config: Mapping[str, Any]) -> Adapter | None:
    """The adapter of a CACHES entry, or ``None`` for a backend this app does not size."""
    return next((adapter for adapter in ADAPTERS if adapter.handles(config)), None)


def sized_aliases(
    caches: Mapping[str, Mapping[str, Any]],
) -> dict[str, tuple[Adapter, Mapping[str, Any]]]:
    """The aliases ``sized_caches()`` sized, each with its adapter and its config."""
    found: dict[str, tuple[Adapter, Mapping[str, Any]]] = {}
    for alias, config in caches.items():
        adapter = adapter_for(config)
        if adapter is not None and adapter.is_sized(config):
            found[alias] = (adapter, config)
    return found


def unchecked_reason(config: Mapping[str, Any]) -> str | None:
    """Why readiness cannot check an alias no adapter handles, if it is Redis-backed.

    Redis-backed: django-redis or Django's RedisCache, a subclass of either,
    or any backend whose path names Redis or Valkey. ``None`` for any other.
    """
    backend = str(config.get("BACKEND", ""))
    if _subclasses_a_redis_backend(backend) or any(
        word in backend.lower() for word in ("redis", "valkey")
    ):
        return f"not checked: the cache backend {backend!r} is not supported yet"
    return None


def _subclasses_a_redis_backend(backend: str) -> bool:
    try:
        cls = import_string(backend)
    except ImportError:
        return False
    from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
    from django_redis.cache import RedisCache as DjangoRedisRedisCache

    return isinstance(cls, type) and issubclass(cls, (DjangoRedisCache, DjangoRedisRedisCache))


def probe_targets(
    caches: Mapping[str, Mapping[str, Any]],
) -> tuple[list[AliasPool], list[Unpinged]]:
    """What readiness pings: the pools of every alias an adapter handles, sized or not;
    and each Redis-backed alias it cannot ping."""
    pools: list[AliasPool] = []
    unpinged: list[Unpinged] = []
    for alias, config in caches.items():
        urls = django_redis.locations(config)
        url = urls[0] if urls else ""
        adapter = adapter_for(config)
        if adapter is not None:
            try:
                pools += adapter.alias_pools(alias, config)
            except (ImproperlyConfigured, ValueError, TypeError) as exc:  # as any use would
                unpinged.append(Unpinged(alias, url, f"its pools cannot be built: {exc}", True))
        elif (reason := unchecked_reason(config)) is not None:
            unpinged.append(Unpinged(alias, url, reason))
    return pools, unpinged


def is_redis_backed(config: Mapping[str, Any]) -> bool:
    """Whether a CACHES entry keeps its data in Redis (whether or not this app sizes it)."""
    return adapter_for(config) is not None or unchecked_reason(config) is not None
