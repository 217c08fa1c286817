"""Pools built once per process, by key, under a lock: the one way this app shares a pool."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from redis import ConnectionPool

P = TypeVar("P", bound="ConnectionPool")


class SharedPools(Generic[P]):
    """A process's pools by key: the first caller builds one, every other thread gets it.

    The lookup takes no lock once a pool exists (a dict read is atomic), so the
    hot path pays nothing for the sharing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[Hashable, P] = {}

    def get(self, key: Hashable, build: Callable[[], P]) -> P:
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = build()
        return pool

    def as_dict(self) -> dict[Hashable, P]:
        """The pools built so far, by key (a copy)."""
        return dict(self._pools)

    def disconnect_all(self) -> None:
        """Close every pooled connection and forget the pools (tests, shutdown)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.disconnect()

    def after_fork(self) -> None:
        """In a forked child: the pools stay, the lock a parent's thread held is made anew."""
        self._lock = threading.Lock()
