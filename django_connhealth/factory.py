"""A django-redis connection factory that builds each pool once per process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from django_redis.pool import ConnectionFactory as DjangoRedisConnectionFactory

if TYPE_CHECKING:
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

    _pools: ClassVar[dict[str, ConnectionPool]] = {}  # type: ignore[misc]
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> ConnectionPool:
        key = params["url"]
        pool = self._pools.get(key)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = self.get_connection_pool(params)
        return pool

    @classmethod
    def after_fork(cls) -> None:
        """In a forked child: the pools stay, the lock a parent's thread held is made anew."""
        cls._pools_lock = threading.Lock()

    @classmethod
    def disconnect_all(cls) -> None:
        """Close every pooled connection and forget the pools (tests, shutdown)."""
        with cls._pools_lock:
            pools = list(cls._pools.values())
            cls._pools.clear()
        for pool in pools:
            pool.disconnect()
