"""The Sentinel pool ``sized_caches`` installs: blocking, counting, named, following the master.

redis-py's ``SentinelConnectionPool`` is a plain pool: a full one fails with
"Too many connections". This one is that pool on the sized pool's blocking,
counting queue. Its connections ask the sentinels for the server of their
role as they connect (redis-py's ``SentinelManagedConnection``); once the
sentinels name another master, the free connections to the old one are
closed and those in use are dropped when given back. The app's own checkouts
(a readiness ping, a publication) ask the sentinels first, so a failover is
followed even by a pool whose connections to the old master still work.
"""

from __future__ import annotations

from typing import Any

from redis.sentinel import MasterNotFoundError, SentinelConnectionPool

from django_connhealth.pool import SizedConnectionPool
from django_connhealth.redispy import is_open, real_connection


class SizedSentinelPool(SentinelConnectionPool, SizedConnectionPool):
    """A :class:`~django_connhealth.pool.SizedConnectionPool` for one Sentinel service and role.

    Takes ``service_name`` and ``sentinel_manager`` (a ``redis.sentinel.Sentinel``)
    as redis-py's Sentinel pool does, ``is_master`` (default true; false: the
    replicas) and the sized pool's keywords.
    """

    #: Its checkout asks the sentinels, which no deadline bounds: pinged on the probe's threads.
    pings_inline = False

    @property
    def role(self) -> str:
        return "master" if self.is_master else "replica"

    @property
    def publishes(self) -> bool:
        return bool(self.is_master)  # a replica refuses the writes

    def checkout(self, deadline: float) -> Any:
        """:meth:`SizedConnectionPool.checkout`, once the sentinels have named a master.

        Raises ``MasterNotFoundError`` when none does. A free connection to a
        server that is no longer the master is closed, to reconnect to the new one.
        """
        master = self.named_master()
        connection = super().checkout(deadline)
        if self.is_master and is_open(connection) and _address(connection) != master:
            connection.disconnect()
        return connection

    def named_master(self) -> tuple[str, int]:
        """The master's address as the sentinels name it now (the pool follows it).

        Raises ``MasterNotFoundError`` naming the sentinels asked, when none
        names a master that is up.
        """
        try:
            return self.get_master_address()  # type: ignore[no-untyped-call,no-any-return]
        except MasterNotFoundError:
            asked = ", ".join(_sentinel_address(sentinel) for sentinel in self.sentinels())
            raise MasterNotFoundError(
                f"no sentinel of {asked} names a master of {self.service_name!r} that is up"
            ) from None

    def sentinels(self) -> list[Any]:
        """The clients of the sentinels this pool asks, in the order it asks them."""
        return list(self.sentinel_manager.sentinels)

    def owns_connection(self, connection: Any) -> bool:
        # One never connected is tied to no master: this pool's to reuse. Others are
        # its own while their server is the master the sentinels last named.
        if not is_open(connection):
            return bool(SizedConnectionPool.owns_connection(self, connection))
        return bool(super().owns_connection(connection))  # type: ignore[no-untyped-call]

    def describe(self) -> dict[str, Any]:
        """The service and the role; for the master's pool, the master last named to it."""
        described: dict[str, Any] = {"service": self.service_name, "role": self.role}
        if self.is_master:
            master = self.master_address
            described["master"] = None if master is None else f"{master[0]}:{master[1]}"
        return described


def _sentinel_address(sentinel: Any) -> str:
    kwargs = sentinel.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def _address(connection: Any) -> tuple[str, int]:
    real = real_connection(connection)
    return real.host, real.port
