"""Django system checks (ids listed in README.rst), registered in ``AppConfig.ready()``.

The checks of a pool's configuration work on what each adapter reads back, so
every backend gets them; an adapter adds the checks of its own settings.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from django_connhealth import defaults
from django_connhealth.adapters.registry import ADAPTERS, adapter_for, is_redis_backed
from django_connhealth.conf import SETTING_NAMES, conf
from django_connhealth.errors import SettingError
from django_connhealth.knobs import KNOBS, ignored_option
from django_connhealth.poolconfig import is_unbounded
from django_connhealth.sizing import process_concurrency

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from django.apps import AppConfig

    from django_connhealth.poolconfig import PoolConfig


def check_redis_pools(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check every Redis alias in CACHES for pools that can fail under load."""
    caches: Mapping[str, Mapping[str, Any]] = getattr(settings, "CACHES", {})
    messages: list[CheckMessage] = []
    threads, problem = _threads(caches)
    if problem is not None:
        messages.append(problem)
    for alias, config in caches.items():
        adapter = adapter_for(config)
        if adapter is not None:
            configs = adapter.pool_configs(config)
            messages.extend(_check_pools(alias, adapter.is_sized(config), configs, threads))
            messages.extend(_check_ignored_options(alias, config, configs))
            messages.extend(adapter.check(alias, config))
    for adapter in ADAPTERS:
        messages.extend(adapter.check_caches(caches))
    if not any(is_redis_backed(config) for config in caches.values()):
        messages.append(
            Warning(
                "CACHES has no Redis-backed alias, so health/ready has nothing to check "
                "and always passes.",
                hint="Point a CACHES alias at Redis (wrapped with sized_caches()), or leave "
                "health/ready out of your probes and use health/live.",
                id="connhealth.W011",
            )
        )
    return messages


def _threads(caches: Mapping[str, Mapping[str, Any]]) -> tuple[int | None, CheckMessage | None]:
    """Threads per process: as sized_caches recorded it, else computed here."""
    for config in caches.values():
        recorded = (config.get("OPTIONS") or {}).get(defaults.OPTIONS_KEY)
        if recorded:
            return int(recorded["concurrency"]["threads"]), None
    try:
        return process_concurrency(os.environ, sys.argv).threads, None
    except SettingError as exc:
        return None, Error(f"{exc.problem}.", hint=exc.hint, id="connhealth.E002")


def _check_pools(
    alias: str, sized: bool, configs: list[PoolConfig], threads: int | None
) -> Iterator[CheckMessage]:
    setting = f"CACHES[{alias!r}]"
    for pool in configs:
        where = f"{setting} LOCATION {pool.location!r}"
        size = pool.values.get("max_connections")
        # A malformed value (a string) is redis-py's to reject when the pool is built.
        if is_unbounded(size):
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
        for knob in KNOBS:
            key = knob.kwarg
            if knob.check_when_unset and key in pool.values and not pool.values[key]:
                yield Warning(
                    f"{where} has no {key} ({key}={pool.values[key]!r}): "
                    f"a Redis that stops answering blocks the worker for good.",
                    hint=f"Set OPTIONS['{knob.option}'] (seconds), or wrap CACHES with "
                    f"sized_caches().",
                    id=knob.check_when_unset,
                )


def _check_ignored_options(
    alias: str, config: Mapping[str, Any], configs: list[PoolConfig]
) -> Iterator[CheckMessage]:
    """An OPTIONS timeout django-redis ignores (a false value), once per alias."""
    options: Mapping[str, Any] = config.get("OPTIONS") or {}
    for knob in KNOBS:
        if not (configs and ignored_option(knob, options)):
            continue
        key = knob.kwarg
        pool = configs[0]
        yield Warning(
            f"CACHES[{alias!r}] has OPTIONS[{knob.option!r}]={options[knob.option]!r} "  # type: ignore[index]
            f"(ignored: django-redis skips a false value), so its pools run with "
            f"{key}={pool.values[key]!r} ({pool.sources[key]}).",
            hint=f"Set OPTIONS[{knob.option!r}] to a number of seconds above 0, or remove it.",
            id="connhealth.W010",
        )


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the CONNHEALTH_* settings and where ProbeMiddleware sits."""
    messages: list[CheckMessage] = []
    for name in SETTING_NAMES:
        try:
            getattr(conf, name)
        except SettingError as exc:
            messages.append(Error(f"{exc.problem}.", hint=exc.hint, id="connhealth.E003"))
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    probe = defaults.PROBE_MIDDLEWARE
    if probe in middleware and middleware[0] != probe:
        messages.append(
            Warning(
                f"MIDDLEWARE lists {probe!r} at position {middleware.index(probe) + 1}, "
                f"after {middleware[0]!r}, which can refuse probes before it answers them.",
                hint=f"Move {probe!r} to the top of MIDDLEWARE.",
                id="connhealth.W009",
            )
        )
    return messages
