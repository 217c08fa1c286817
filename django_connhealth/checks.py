"""Django system checks for Redis cache pools (ids listed in README.rst)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string
from redis.connection import BlockingConnectionPool

from django_connhealth import defaults
from django_connhealth.caches import is_django_redis, is_sentinel, locations
from django_connhealth.errors import SettingError
from django_connhealth.factory import ConnectionFactory
from django_connhealth.poolconfig import pool_class, pool_config
from django_connhealth.redact import redact_url
from django_connhealth.sizing import gunicorn_argv, resolve_concurrency

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from django.apps import AppConfig

UNBOUNDED = 2**31
DJANGO_REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
# Options that shape the pool django-redis builds for a URL.
POOL_OPTIONS = (
    "CONNECTION_POOL_CLASS",
    "CONNECTION_POOL_KWARGS",
    "SOCKET_TIMEOUT",
    "SOCKET_CONNECT_TIMEOUT",
    "PARSER_CLASS",
    "USERNAME",
    "PASSWORD",
)


@register(Tags.caches)
def check_redis_pools(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check every django-redis alias in CACHES for pools that can fail under load."""
    caches: Mapping[str, Mapping[str, Any]] = getattr(settings, "CACHES", {})
    messages: list[CheckMessage] = []
    threads, problem = _threads(caches)
    if problem is not None:
        messages.append(problem)
    for alias, config in caches.items():
        if config.get("BACKEND") == DJANGO_REDIS_CACHE:
            messages.append(
                Warning(
                    f"CACHES[{alias!r}] uses Django's built-in RedisCache, whose pools are "
                    f"per thread, so max_connections cannot bound a process.",
                    hint="Use django_redis.cache.RedisCache and wrap CACHES with sized_caches().",
                    id="connhealth.W008",
                )
            )
        elif is_django_redis(config) and not is_sentinel(config.get("OPTIONS") or {}):
            messages.extend(_check_alias(alias, config, threads))
    messages.extend(_check_shared_locations(caches))
    return messages


def _threads(caches: Mapping[str, Mapping[str, Any]]) -> tuple[int | None, CheckMessage | None]:
    """Threads per process: as sized_caches recorded it, else computed here."""
    for config in caches.values():
        recorded = (config.get("OPTIONS") or {}).get(defaults.OPTIONS_KEY)
        if recorded:
            return int(recorded["concurrency"]["threads"]), None
    try:
        return resolve_concurrency(os.environ, gunicorn_argv(os.environ, sys.argv)).threads, None
    except SettingError as exc:
        return None, Error(f"{exc.problem}.", hint=exc.hint, id="connhealth.E002")


def _check_alias(
    alias: str, config: Mapping[str, Any], threads: int | None
) -> Iterator[CheckMessage]:
    options: Mapping[str, Any] = config.get("OPTIONS") or {}
    sized = defaults.OPTIONS_KEY in options
    setting = f"CACHES[{alias!r}]"
    for url in locations(config):
        pool = pool_config(options, url)
        where = f"{setting} LOCATION {redact_url(url)!r}"
        size = pool.values.get("max_connections")
        # A malformed value (a string) is redis-py's to reject when the pool is built.
        if size is None or (isinstance(size, (int, float)) and size >= UNBOUNDED):
            yield Error(
                f"{where} has an unbounded connection pool (max_connections={size!r}).",
                hint="Wrap CACHES with django_connhealth.sized_caches(), or set "
                "CONNECTION_POOL_KWARGS['max_connections'].",
                id="connhealth.E001",
            )
        elif not sized:
            yield Warning(
                f"{where} is not sized for this server's threads (max_connections={size!r}).",
                hint="Wrap CACHES with django_connhealth.sized_caches().",
                id="connhealth.W001",
            )
        elif threads is not None and isinstance(size, int) and size < threads:
            yield Warning(
                f"{where} has max_connections={size!r} ({pool.sources['max_connections']}), "
                f"fewer than the {threads} threads of one process.",
                hint="Remove the max_connections you set so that sized_caches() derives it, "
                "or raise it to at least the thread count.",
                id="connhealth.W002",
            )
        for key, check_id, option in (
            ("socket_timeout", "connhealth.W005", "SOCKET_TIMEOUT"),
            ("socket_connect_timeout", "connhealth.W006", "SOCKET_CONNECT_TIMEOUT"),
        ):
            if not pool.values.get(key):
                yield Warning(
                    f"{where} has no {key} ({key}={pool.values.get(key)!r}): "
                    f"a Redis that stops answering blocks the worker for good.",
                    hint=f"Set OPTIONS['{option}'] (seconds), or wrap CACHES with sized_caches().",
                    id=check_id,
                )
    # Only a class the user named: without one, E001 or W001 (whose fix installs a
    # blocking pool) already reports the alias. Once per alias, not per URL.
    cls = pool_class(options)
    if (
        "CONNECTION_POOL_CLASS" in options
        and cls is not None
        and not issubclass(cls, BlockingConnectionPool)
    ):
        yield Warning(
            f"{setting} OPTIONS['CONNECTION_POOL_CLASS']={options['CONNECTION_POOL_CLASS']!r} "
            f"fails with 'Too many connections' when full instead of waiting.",
            hint="Remove CONNECTION_POOL_CLASS so that sized_caches() installs its "
            "blocking pool, or use a redis.BlockingConnectionPool subclass.",
            id="connhealth.W003",
        )
    factory = options.get("CONNECTION_FACTORY", defaults.CONNECTION_FACTORY)
    if sized and not _is_our_factory(factory):
        yield Warning(
            f"{setting} OPTIONS['CONNECTION_FACTORY']={factory!r} may build one pool per "
            f"thread, so the size meant for the process caps each thread instead.",
            hint=f"Remove CONNECTION_FACTORY, or subclass {defaults.CONNECTION_FACTORY}.",
            id="connhealth.W007",
        )


def _is_our_factory(path: str) -> bool:
    """Whether ``path`` names this app's connection factory or a subclass (W007's hint)."""
    try:
        factory = import_string(path)
    except ImportError:
        return False
    return isinstance(factory, type) and issubclass(factory, ConnectionFactory)


def _pool_shape(options: Mapping[str, Any]) -> dict[str, Any]:
    shape = {key: options.get(key) for key in POOL_OPTIONS}
    kwargs = dict(shape["CONNECTION_POOL_KWARGS"] or {})
    kwargs.pop("connhealth_alias", None)  # the name, not the pool's behaviour
    shape["CONNECTION_POOL_KWARGS"] = kwargs
    return shape


def _check_shared_locations(caches: Mapping[str, Mapping[str, Any]]) -> Iterator[CheckMessage]:
    first: dict[str, tuple[str, dict[str, Any]]] = {}
    for alias, config in caches.items():
        if not is_django_redis(config):
            continue
        shape = _pool_shape(config.get("OPTIONS") or {})
        for url in locations(config):
            if url not in first:
                first[url] = (alias, shape)
                continue
            other, other_shape = first[url]
            if shape != other_shape:
                differing = sorted(key for key in POOL_OPTIONS if shape[key] != other_shape[key])
                yield Warning(
                    f"CACHES[{alias!r}] shares LOCATION {redact_url(url)!r} with "
                    f"CACHES[{other!r}] but sets other pool options ({', '.join(differing)}); "
                    f"django-redis builds one pool per URL, so only one alias's options apply.",
                    hint="Give both aliases the same pool options, or point them at "
                    "different URLs (another db number).",
                    id="connhealth.W004",
                )


PROBE_MIDDLEWARE = "django_connhealth.middleware.ProbeMiddleware"


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the CONNHEALTH_* settings and where ProbeMiddleware sits."""
    from django_connhealth.conf import SETTING_NAMES, conf

    messages: list[CheckMessage] = []
    for name in SETTING_NAMES:
        try:
            getattr(conf, name)
        except SettingError as exc:
            messages.append(Error(f"{exc.problem}.", hint=exc.hint, id="connhealth.E003"))
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if PROBE_MIDDLEWARE in middleware and middleware[0] != PROBE_MIDDLEWARE:
        messages.append(
            Warning(
                f"MIDDLEWARE lists {PROBE_MIDDLEWARE!r} at position "
                f"{middleware.index(PROBE_MIDDLEWARE) + 1}, after {middleware[0]!r}, which can "
                f"refuse probes before it answers them.",
                hint=f"Move {PROBE_MIDDLEWARE!r} to the top of MIDDLEWARE.",
                id="connhealth.W009",
            )
        )
    return messages
