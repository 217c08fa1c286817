"""django-redis connection factories that build each pool once per process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from django_redis.pool import ConnectionFactory as DjangoRedisConnectionFactory
from django_redis.pool import SentinelConnectionFactory as DjangoRedisSentinelConnectionFactory
from redis.connection import to_bool

from django_connhealth.shared import SharedPools

if TYPE_CHECKING:
    from collections.abc import Hashable

    from redis import ConnectionPool


class ConnectionFactory(DjangoRedisConnectionFactory):
    """django-redis's factory, with the pool cache filled under a lock.

    Django keeps one cache object per thread, and django-redis fills its pool
    dict without a lock: under gunicorn gthread the first requests of a worker
    can each build a pool and keep it for the thread's life, so a size meant for
    the process caps a thread. Here the first caller builds the pool and every
    other thread waits for it and gets the same one. Pools are keyed by URL, as
    in django-redis: aliases with one LOCATION share a pool.
    """

    pools: ClassVar[SharedPools[ConnectionPool]] = SharedPools()

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> ConnectionPool:
        return self.pools.get(self.pool_key(params), lambda: self.get_connection_pool(params))

    def pool_key(self, params: dict[str, Any]) -> Hashable:
        """What tells pools apart: the URL, as django-redis keys them."""
        return str(params["url"])

    @classmethod
    def after_fork(cls) -> None:
        """In a forked child: the pools stay, the lock a parent's thread held is made anew."""
        cls.pools.after_fork()

    @classmethod
    def disconnect_all(cls) -> None:
        """Close every pooled connection and forget the pools (tests, shutdown)."""
        cls.pools.disconnect_all()


class SentinelConnectionFactory(ConnectionFactory, DjangoRedisSentinelConnectionFactory):
    """django-redis's Sentinel factory, with each pool built once per process under a lock.

    Pools are keyed by URL, so one service has a pool per role (``?is_master=0``
    for the replicas), apart from the pools of plain URLs.
    """

    pools: ClassVar[SharedPools[ConnectionPool]] = SharedPools()

    def pool_key(self, params: dict[str, Any]) -> Hashable:
        # One service name (``mymaster``, in every tutorial) on two sets of sentinels is two
        # services: keyed by the sentinels too, not the URL alone as django-redis does.
        return (params["url"], repr(self.options.get("SENTINELS")))

    def get_connection_pool(self, params: dict[str, Any]) -> ConnectionPool:
        """The pool for ``params``, its role (``?is_master``) read out of the URL first.

        django-redis 5 leaves ``is_master`` in the URL, where redis-py reads the
        string ``"0"`` as true: its replicas' pool would read from the master.
        """
        url = urlsplit(params["url"])
        query = parse_qs(url.query, keep_blank_values=True)
        if "is_master" in query:
            is_master = to_bool(query.pop("is_master")[0])
            if is_master is None:  # blank: the master, as django-redis reads it
                is_master = True
            bare = urlunsplit(url._replace(query=urlencode(query, doseq=True)))
            params = {**params, "url": bare, "is_master": is_master}
        return super().get_connection_pool(params)

    @classmethod
    def disconnect_all(cls) -> None:
        """Close every pooled connection, and the pools' connections to their sentinels."""
        pools = list(cls.pools.as_dict().values())
        super().disconnect_all()
        for pool in pools:
            manager = getattr(pool, "sentinel_manager", None)
            for sentinel in getattr(manager, "sentinels", ()):
                sentinel.connection_pool.disconnect()
