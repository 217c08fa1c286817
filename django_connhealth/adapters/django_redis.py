"""django-redis with one URL or a list of them (primary, then replicas).

django-redis builds one pool per URL per process in its connection factory,
merging OPTIONS (``SOCKET_TIMEOUT`` and friends), ``CONNECTION_POOL_KWARGS``
and the URL's query string. Sizing fills ``CONNECTION_POOL_KWARGS``; the pools
are found through the alias's own connection factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from django.core.checks import Warning
from django.utils.module_loading import import_string
from django_redis.pool import get_connection_factory
from redis.connection import BlockingConnectionPool

from django_connhealth import defaults
from django_connhealth.adapters.base import Adapter, AliasPool
from django_connhealth.adapters.filling import (
    fill_pool_kwargs,
    pool_host,
    pool_name,
    sizing_record,
)
from django_connhealth.factory import ConnectionFactory
from django_connhealth.knobs import POOL_SHAPING_OPTIONS, set_by_user
from django_connhealth.poolconfig import PoolConfig, import_pool_class, read_back
from django_connhealth.redact import redact_url, secrets_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from django.core.checks import CheckMessage
    from redis import ConnectionPool

    from django_connhealth.adapters.base import SizingPlan


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


def options_of(config: Mapping[str, Any]) -> Mapping[str, Any]:
    options: Mapping[str, Any] = config.get("OPTIONS") or {}
    return options


def is_sentinel(options: Mapping[str, Any]) -> bool:
    return "SENTINELS" in options or "Sentinel" in str(options.get("CLIENT_CLASS", ""))


def pool_class(options: Mapping[str, Any]) -> type[ConnectionPool] | None:
    """The pool class an alias uses, or ``None`` when it cannot be imported."""
    return import_pool_class(options.get("CONNECTION_POOL_CLASS", defaults.DJANGO_REDIS_POOL_CLASS))


def connection_factory(options: Mapping[str, Any]) -> Any:
    """The django-redis connection factory an alias with ``options`` uses."""
    # options= by name: django-redis before 7 takes (path=None, options=None).
    return get_connection_factory(options=dict(options))


class DjangoRedisAdapter(Adapter):
    """``django_redis.cache.RedisCache`` with plain URLs (not Sentinel)."""

    def handles(self, config: Mapping[str, Any]) -> bool:
        backend = str(config.get("BACKEND", ""))
        return backend.startswith("django_redis.") and not is_sentinel(options_of(config))

    def size(self, alias: str, config: Mapping[str, Any], plan: SizingPlan) -> dict[str, Any]:
        # Aliases that share a URL share a pool (django-redis keys pools by URL):
        # name it after the first such alias, so every alias gives it the same options.
        urls = locations(config)
        name = alias
        if urls:
            name = next(
                other
                for other, other_config in plan.caches.items()
                if self.handles(other_config) and urls[0] in locations(other_config)
            )
        options = dict(options_of(config))
        kwargs = dict(options.get("CONNECTION_POOL_KWARGS") or {})
        ours = "CONNECTION_POOL_CLASS" not in options
        options.setdefault("CONNECTION_POOL_CLASS", defaults.POOL_CLASS)
        options.setdefault("CONNECTION_FACTORY", defaults.CONNECTION_FACTORY)
        sources = fill_pool_kwargs(
            kwargs,
            plan,
            name=name,
            ours=ours,
            set_by_user=lambda knob: set_by_user(knob, options, kwargs),
        )
        options["CONNECTION_POOL_KWARGS"] = kwargs
        options[defaults.OPTIONS_KEY] = sizing_record(plan, sources)
        return {**config, "OPTIONS": options}

    def is_sized(self, config: Mapping[str, Any]) -> bool:
        return defaults.OPTIONS_KEY in options_of(config)

    def pool_name(self, alias: str, config: Mapping[str, Any]) -> str:
        return pool_name(options_of(config).get("CONNECTION_POOL_KWARGS") or {}, alias)

    def pool_host(self, config: Mapping[str, Any]) -> str | None:
        return pool_host(options_of(config).get("CONNECTION_POOL_KWARGS") or {})

    def pool_configs(self, config: Mapping[str, Any]) -> list[PoolConfig]:
        return [pool_config(options_of(config), url) for url in locations(config)]

    def alias_pools(self, alias: str, config: Mapping[str, Any]) -> list[AliasPool]:
        options = options_of(config)
        factory = connection_factory(options)
        return [
            AliasPool(alias, url, factory.connect(url), secrets_of(url, options))
            for url in locations(config)
        ]

    def check(self, alias: str, config: Mapping[str, Any]) -> Iterator[CheckMessage]:
        options = options_of(config)
        setting = f"CACHES[{alias!r}]"
        # Only a class the user named: without one, E001 or W001 (whose fix installs a
        # blocking pool) already reports the alias.
        cls = pool_class(options)
        if (
            "CONNECTION_POOL_CLASS" in options
            and cls is not None
            and not issubclass(cls, BlockingConnectionPool)
        ):
            yield Warning(
                f"{setting} OPTIONS['CONNECTION_POOL_CLASS']="
                f"{options['CONNECTION_POOL_CLASS']!r} fails with 'Too many connections' "
                f"when full instead of waiting.",
                hint="Remove CONNECTION_POOL_CLASS so that sized_caches() installs its "
                "blocking pool, or use a redis.BlockingConnectionPool subclass.",
                id="connhealth.W003",
            )
        factory = options.get("CONNECTION_FACTORY", defaults.CONNECTION_FACTORY)
        if self.is_sized(config) and not _is_our_factory(factory):
            yield Warning(
                f"{setting} OPTIONS['CONNECTION_FACTORY']={factory!r} may build one pool per "
                f"thread, so the size meant for the process caps each thread instead.",
                hint=f"Remove CONNECTION_FACTORY, or subclass {defaults.CONNECTION_FACTORY}.",
                id="connhealth.W007",
            )

    def check_caches(self, caches: Mapping[str, Mapping[str, Any]]) -> Iterator[CheckMessage]:
        # Sentinel aliases too: django-redis keys every pool by URL.
        first: dict[str, tuple[str, dict[str, Any]]] = {}
        for alias, config in caches.items():
            if not str(config.get("BACKEND", "")).startswith("django_redis."):
                continue
            shape = _pool_shape(options_of(config))
            for url in locations(config):
                if url not in first:
                    first[url] = (alias, shape)
                    continue
                other, other_shape = first[url]
                if shape != other_shape:
                    differing = sorted(
                        k for k in POOL_SHAPING_OPTIONS if shape[k] != other_shape[k]
                    )
                    yield Warning(
                        f"CACHES[{alias!r}] shares LOCATION {redact_url(url)!r} with "
                        f"CACHES[{other!r}] but sets other pool options "
                        f"({', '.join(differing)}); django-redis builds one pool per URL, "
                        f"so only one alias's options apply.",
                        hint="Give both aliases the same pool options, or point them at "
                        "different URLs (another db number).",
                        id="connhealth.W004",
                    )


def pool_config(options: Mapping[str, Any], url: str) -> PoolConfig:
    """Effective settings for ``url`` under an alias's ``OPTIONS``."""
    return read_back(
        url,
        pool_class(options),
        query=location_query(url),
        kwargs=options.get("CONNECTION_POOL_KWARGS") or {},
        options=options,
        recorded=(options.get(defaults.OPTIONS_KEY) or {}).get("sources", {}),
    )


def _is_our_factory(path: str) -> bool:
    """Whether ``path`` names this app's connection factory or a subclass (W007's hint)."""
    try:
        factory = import_string(path)
    except ImportError:
        return False
    return isinstance(factory, type) and issubclass(factory, ConnectionFactory)


def _pool_shape(options: Mapping[str, Any]) -> dict[str, Any]:
    shape = {key: options.get(key) for key in POOL_SHAPING_OPTIONS}
    kwargs = dict(shape["CONNECTION_POOL_KWARGS"] or {})
    kwargs.pop("connhealth_alias", None)  # the name, not the pool's behaviour
    shape["CONNECTION_POOL_KWARGS"] = kwargs
    return shape


adapter = DjangoRedisAdapter()
