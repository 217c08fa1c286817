"""``sized_caches()``: fill in the pool settings of every Redis cache the user did not set."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from django_connhealth.adapters.base import SizingPlan
from django_connhealth.adapters.registry import adapter_for
from django_connhealth.conf import client_host, pool_headroom
from django_connhealth.sizing import process_concurrency

if TYPE_CHECKING:
    from collections.abc import Mapping


def sized_caches(
    caches: Mapping[str, Mapping[str, Any]], *, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Return a copy of ``caches`` with Redis pools sized for this process.

    For each alias whose backend has an adapter (django-redis), fills in what
    the user did not set: this app's pool class and connection factory,
    ``max_connections`` (threads per process plus ``CONNHEALTH_POOL_HEADROOM``),
    the pool wait ``timeout``, socket and connect timeouts,
    ``health_check_interval`` and retry with backoff. A value the user set
    always wins. Other backends are copied unchanged; ``caches`` itself is
    never modified.

    Raises ImproperlyConfigured, naming the variable, for a malformed value.
    """
    environ = os.environ if environ is None else environ
    plan = SizingPlan(
        concurrency=process_concurrency(environ, sys.argv),
        headroom=pool_headroom(environ),
        host=client_host(environ),
        caches=caches,
    )
    sized: dict[str, dict[str, Any]] = {}
    for alias, config in caches.items():
        adapter = adapter_for(config)
        sized[alias] = dict(config) if adapter is None else adapter.size(alias, config, plan)
    return sized
