"""The adapters, and the lookups that loop over them.

Sizing, readiness, the checks and the report find a CACHES entry's adapter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django_connhealth.adapters import django_redis

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django_connhealth.adapters.base import Adapter

#: In the order they are asked; the first that handles a CACHES entry speaks for it.
ADAPTERS: tuple[Adapter, ...] = (django_redis.adapter,)


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
