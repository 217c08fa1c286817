"""django-redis with one URL or a list of them (primary, then replicas).

django-redis builds one pool per URL per process in its connection factory,
merging OPTIONS (``SOCKET_TIMEOUT`` and friends), ``CONNECTION_POOL_KWARGS``
and the URL's query string. Sizing fills ``CONNECTION_POOL_KWARGS``; the pools
are found through the alias's own connection factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
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


def pool_class(
    options: Mapping[str, Any], default: str = defaults.DJANGO_REDIS_POOL_CLASS
) -> type[ConnectionPool] | None:
    """The pool class an alias uses, or ``None`` when it cannot be imported."""
    return import_pool_class(options.get("CONNECTION_POOL_CLASS", default))


def connection_factory(options: Mapping[str, Any]) -> Any:
    """The django-redis connection factory an alias with ``options`` uses."""
    # options= by name: django-redis before 7 takes (path=None, options=None).
    return get_connection_factory(options=dict(options))


class DjangoRedisAdapter(Adapter):
    """``django_redis.cache.RedisCache`` with plain URLs (not Sentinel)."""

    #: the pool class and the connection factory sizing installs
    pool_class_path = defaults.POOL_CLASS
    factory_path = defaults.CONNECTION_FACTORY
    #: the pool class django-redis uses when OPTIONS names none
    stock_pool_class = defaults.DJANGO_REDIS_POOL_CLASS
    #: OPTIONS values that count as unset: django-redis's own defaults, named
    stock: ClassVar[Mapping[str, str]] = {}

    def handles(self, config: Mapping[str, Any]) -> bool:
        backend = str(config.get("BACKEND", ""))
        return backend.startswith("django_redis.") and not is_sentinel(options_of(config))

    def urls(self, config: Mapping[str, Any]) -> list[str]:
        """The URL of each of the alias's pools, as its client asks its factory for them."""
        return locations(config)

    def names_own(self, options: Mapping[str, Any], key: str) -> bool:
        """Whether OPTIONS names a ``key`` of the user's own (not unset, not the stock one)."""
        return key in options and options[key] != self.stock.get(key)

    def size(self, alias: str, config: Mapping[str, Any], plan: SizingPlan) -> dict[str, Any]:
        # Aliases that share a URL share a pool (django-redis keys pools by URL):
        # name it after the first such alias, so every alias gives it the same options.
        urls = self.urls(config)
        name = alias
        if urls:
            name = next(
                other
                for other, other_config in plan.caches.items()
                if self.handles(other_config) and urls[0] in self.urls(other_config)
            )
        options = dict(options_of(config))
        kwargs = dict(options.get("CONNECTION_POOL_KWARGS") or {})
        ours = not self.names_own(options, "CONNECTION_POOL_CLASS")
        if ours:
            options["CONNECTION_POOL_CLASS"] = self.pool_class_path
        if not self.names_own(options, "CONNECTION_FACTORY"):
            options["CONNECTION_FACTORY"] = self.factory_path
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
        options = options_of(config)
        return [pool_config(options, url, self.stock_pool_class) for url in self.urls(config)]

    def alias_pools(self, alias: str, config: Mapping[str, Any]) -> list[AliasPool]:
        options = options_of(config)
        factory = connection_factory(options)
        return [
            AliasPool(alias, url, factory.connect(url), self.secrets(url, options))
            for url in self.urls(config)
        ]

    def secrets(self, url: str, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The passwords an alias holds for ``url``, to keep out of output."""
        return secrets_of(url, options)

    def check(self, alias: str, config: Mapping[str, Any]) -> Iterator[CheckMessage]:
        options = options_of(config)
        setting = f"CACHES[{alias!r}]"
        # Only a class the user named: without one, E001 or W001 (whose fix installs a
        # blocking pool) already reports the alias.
        cls = pool_class(options, self.stock_pool_class)
        if (
            self.names_own(options, "CONNECTION_POOL_CLASS")
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
        factory = options.get("CONNECTION_FACTORY", self.factory_path)
        if self.is_sized(config) and not _subclasses(factory, self.factory_path):
            yield Warning(
                f"{setting} OPTIONS['CONNECTION_FACTORY']={factory!r} may build one pool per "
                f"thread, so the size meant for the process caps each thread instead.",
                hint=f"Remove CONNECTION_FACTORY, or subclass {self.factory_path}.",
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


def pool_config(
    options: Mapping[str, Any], url: str, default_class: str = defaults.DJANGO_REDIS_POOL_CLASS
) -> PoolConfig:
    """Effective settings for ``url`` under an alias's ``OPTIONS``."""
    return read_back(
        url,
        pool_class(options, default_class),
        query=location_query(url),
        kwargs=options.get("CONNECTION_POOL_KWARGS") or {},
        options=options,
        recorded=(options.get(defaults.OPTIONS_KEY) or {}).get("sources", {}),
    )


def _subclasses(path: str, base_path: str) -> bool:
    """Whether ``path`` names the class ``base_path`` names, or a subclass of it."""
    try:
        cls, base = import_string(path), import_string(base_path)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, base)


def _pool_shape(options: Mapping[str, Any]) -> dict[str, Any]:
    shape = {key: options.get(key) for key in POOL_SHAPING_OPTIONS}
    kwargs = dict(shape["CONNECTION_POOL_KWARGS"] or {})
    kwargs.pop("connhealth_alias", None)  # the name, not the pool's behaviour
    shape["CONNECTION_POOL_KWARGS"] = kwargs
    return shape


adapter = DjangoRedisAdapter()
