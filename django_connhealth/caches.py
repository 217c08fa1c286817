"""``sized_caches()``: fill django-redis pool options the user did not set."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from django_connhealth import defaults
from django_connhealth.naming import client_host
from django_connhealth.sizing import (
    Concurrency,
    env_count,
    gunicorn_argv,
    pool_size,
    resolve_concurrency,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

# Pool options this app fills: (CONNECTION_POOL_KWARGS key, django-redis OPTIONS key
# that sets the same thing, default). ``max_connections`` is derived, not a default.
FILLED = (
    ("timeout", None, defaults.POOL_TIMEOUT),
    ("socket_timeout", "SOCKET_TIMEOUT", defaults.SOCKET_TIMEOUT),
    ("socket_connect_timeout", "SOCKET_CONNECT_TIMEOUT", defaults.SOCKET_CONNECT_TIMEOUT),
    ("health_check_interval", None, defaults.HEALTH_CHECK_INTERVAL),
)
# Keys any redis-py pool accepts; the rest only ours (or a blocking pool) does.
_ANY_POOL = {"max_connections", "socket_timeout", "socket_connect_timeout", "health_check_interval"}


def is_django_redis(config: Mapping[str, Any]) -> bool:
    return str(config.get("BACKEND", "")).startswith("django_redis.")


def is_sentinel(options: Mapping[str, Any]) -> bool:
    return "SENTINELS" in options or "Sentinel" in str(options.get("CLIENT_CLASS", ""))


def locations(config: Mapping[str, Any]) -> list[str]:
    """The server URLs of a cache, split the way django-redis splits LOCATION."""
    location = config.get("LOCATION", "")
    if isinstance(location, str):
        return [url for url in location.split(",") if url]
    return [str(url) for url in location]


def location_query(url: str) -> dict[str, str]:
    """Options set in a URL's query string (they override keyword arguments).

    A repeated key counts once, with its first value, as in redis-py's ``parse_url``.
    """
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def sized_caches(
    caches: Mapping[str, Mapping[str, Any]], *, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Return a copy of ``caches`` with django-redis pools sized for this process.

    For each django-redis alias, fills in what the user did not set: this app's
    pool class and connection factory, ``max_connections`` (threads per process
    plus ``CONNHEALTH_POOL_HEADROOM``), the pool wait ``timeout``, socket and
    connect timeouts, ``health_check_interval`` and retry with backoff. A value
    the user set always wins. Other backends are copied unchanged; ``caches``
    itself is never modified.

    Raises ImproperlyConfigured, naming the variable, for a malformed value.
    """
    environ = os.environ if environ is None else environ
    concurrency = resolve_concurrency(environ, gunicorn_argv(environ, sys.argv))
    headroom = env_count(environ, "CONNHEALTH_POOL_HEADROOM", minimum=0)
    headroom = defaults.POOL_HEADROOM if headroom is None else headroom
    host = client_host(environ)
    # Aliases that share a URL share a pool (django-redis keys pools by URL): name
    # it after the first such alias, so every alias gives it the same options.
    pool_alias: dict[str, str] = {}
    for alias, config in caches.items():
        if is_django_redis(config):
            for url in locations(config):
                pool_alias.setdefault(url, alias)

    sized: dict[str, dict[str, Any]] = {}
    for alias, config in caches.items():
        sized[alias] = dict(config)
        options = config.get("OPTIONS") or {}
        if is_django_redis(config) and not is_sentinel(options):
            urls = locations(config)
            name = pool_alias[urls[0]] if urls else alias
            sized[alias]["OPTIONS"] = _sized_options(options, concurrency, headroom, name, host)
    return sized


def _sized_options(
    options: Mapping[str, Any],
    concurrency: Concurrency,
    headroom: int,
    alias: str,
    host: str,
) -> dict[str, Any]:
    options = dict(options)
    kwargs = dict(options.get("CONNECTION_POOL_KWARGS") or {})
    sources: dict[str, str] = {}
    ours = "CONNECTION_POOL_CLASS" not in options
    options.setdefault("CONNECTION_POOL_CLASS", defaults.POOL_CLASS)
    options.setdefault("CONNECTION_FACTORY", defaults.CONNECTION_FACTORY)

    if "max_connections" in kwargs:
        sources["max_connections"] = "OPTIONS"
    else:
        kwargs["max_connections"] = pool_size(concurrency, headroom)
        sources["max_connections"] = "derived"
    for key, option, default in FILLED:
        if key in kwargs or (option and options.get(option) is not None):
            sources[key] = "OPTIONS"
        elif ours or key in _ANY_POOL:
            kwargs[key] = default
            sources[key] = "default"
    if ours:
        if "retry" in kwargs or "connhealth_retries" in kwargs:
            sources["retry"] = "OPTIONS"
        else:
            kwargs["connhealth_retries"] = defaults.RETRIES
            sources["retry"] = "default"
        kwargs["connhealth_alias"] = alias
        kwargs["connhealth_host"] = host
    options["CONNECTION_POOL_KWARGS"] = kwargs
    options[defaults.OPTIONS_KEY] = {
        "concurrency": concurrency.as_dict(),
        "headroom": headroom,
        "sources": sources,
    }
    return options
