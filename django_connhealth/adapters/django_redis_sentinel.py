"""django-redis with Sentinel: LOCATION names a service, ``OPTIONS["SENTINELS"]`` the sentinels.

django-redis's Sentinel connection factory builds one pool per URL
(``redis://mymaster/0``: the service ``mymaster``, db 0; ``?is_master=0``: its
replicas), and ``SentinelClient`` turns one URL into two, the master's and the
replicas'. Sizing is plain django-redis's (the same knobs, in
``CONNECTION_POOL_KWARGS``) with this app's Sentinel pool and factory, plus
timeouts and no retry for the connections to the sentinels themselves: a dead
sentinel is passed over for the next one, never waited on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlparse

from django.core.checks import Error
from django.utils.module_loading import import_string
from django_redis.client.sentinel import SentinelClient, replace_query
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.adapters.django_redis import (
    DjangoRedisAdapter,
    is_sentinel,
    locations,
    options_of,
)
from django_connhealth.knobs import FILLED
from django_connhealth.redact import secrets_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from django.core.checks import CheckMessage

    from django_connhealth.adapters.base import SizingPlan

#: The timeouts the sentinels' own connections get: the pool's, as redis-py does.
SENTINEL_TIMEOUTS = tuple(knob for knob in FILLED if knob.kwarg.startswith("socket_"))


class DjangoRedisSentinelAdapter(DjangoRedisAdapter):
    """``django_redis.cache.RedisCache`` with ``SENTINELS`` or ``SentinelClient``."""

    pool_class_path = defaults.SENTINEL_POOL_CLASS
    factory_path = defaults.SENTINEL_CONNECTION_FACTORY
    stock_pool_class = defaults.DJANGO_REDIS_SENTINEL_POOL_CLASS
    stock: ClassVar[Mapping[str, str]] = {
        "CONNECTION_POOL_CLASS": defaults.DJANGO_REDIS_SENTINEL_POOL_CLASS,
        "CONNECTION_FACTORY": defaults.DJANGO_REDIS_SENTINEL_FACTORY,
    }

    def handles(self, config: Mapping[str, Any]) -> bool:
        backend = str(config.get("BACKEND", ""))
        return backend.startswith("django_redis.") and is_sentinel(options_of(config))

    def urls(self, config: Mapping[str, Any]) -> list[str]:
        location = config.get("LOCATION", "")
        if isinstance(location, str) and _is_sentinel_client(options_of(config)):
            # As SentinelClient splits it: the pools are keyed by these very strings.
            url = urlparse(location)
            query = parse_qs(url.query, keep_blank_values=True)
            return [
                replace_query(url, {**query, "is_master": [role]})  # type: ignore[no-untyped-call]
                for role in (1, 0)
            ]
        return locations(config)

    def size(self, alias: str, config: Mapping[str, Any], plan: SizingPlan) -> dict[str, Any]:
        sized = super().size(alias, config, plan)
        options = sized["OPTIONS"]
        kwargs = options["CONNECTION_POOL_KWARGS"]
        sentinel_kwargs = dict(options.get("SENTINEL_KWARGS") or {})
        for knob in SENTINEL_TIMEOUTS:
            user_value = kwargs.get(knob.kwarg) or (knob.option and options.get(knob.option))
            sentinel_kwargs.setdefault(knob.kwarg, user_value or knob.default)
        sentinel_kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        options["SENTINEL_KWARGS"] = sentinel_kwargs
        return sized

    def secrets(self, url: str, options: Mapping[str, Any]) -> tuple[str, ...]:
        sentinel_password = (options.get("SENTINEL_KWARGS") or {}).get("password")
        return (*secrets_of(url, options), *([str(sentinel_password)] if sentinel_password else []))

    def check(self, alias: str, config: Mapping[str, Any]) -> Iterator[CheckMessage]:
        yield from super().check(alias, config)
        sentinels = options_of(config).get("SENTINELS")
        if not _are_sentinels(sentinels):
            yield Error(
                f"CACHES[{alias!r}] uses Sentinel but OPTIONS['SENTINELS']={sentinels!r} is "
                f"not a list of (host, port) pairs, so every use of the cache fails.",
                hint="Set OPTIONS['SENTINELS'] to the sentinels' addresses, e.g. "
                "[('sentinel-1', 26379), ('sentinel-2', 26379)].",
                id="connhealth.E004",
            )

    def check_caches(self, caches: Mapping[str, Mapping[str, Any]]) -> Iterator[CheckMessage]:
        return iter(())  # the plain adapter's checks across aliases cover Sentinel's


def _is_sentinel_client(options: Mapping[str, Any]) -> bool:
    try:
        cls = import_string(str(options.get("CLIENT_CLASS", "")))
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, SentinelClient)


def _are_sentinels(sentinels: object) -> bool:
    return (
        isinstance(sentinels, (list, tuple))
        and bool(sentinels)
        and all(
            isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2
            for pair in sentinels
        )
    )


adapter = DjangoRedisSentinelAdapter()
