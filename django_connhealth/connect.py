"""What a sized pool runs as each of its connections connects: set up, count, name.

Installed as the connection's ``redis_connect_func``; the pool is held weakly,
so that a dropped pool goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from django_connhealth.redispy import set_up

if TYPE_CHECKING:
    import weakref
    from collections.abc import Callable


class CountingPool(Protocol):
    """What this needs of a sized pool (``django_connhealth.pool``, which imports this)."""

    owns_names: bool

    @property
    def names_connections(self) -> bool: ...

    def connected(self, connection: Any) -> None: ...

    def names_refused(self, exc: ResponseError) -> None: ...


def on_connect(
    pool_ref: weakref.ref[CountingPool],
    inner: Callable[[Any], None] | None,
    connection: Any,
) -> None:
    """A connection's set-up (``redis_connect_func``), counted, then its name if allowed.

    redis-py would send ``CLIENT SETNAME`` inside the set-up and fail the
    connection on any refusal (an ACL user without ``client|setname``, a
    Redis 6 ACL without ``client``, a proxy that knows no ``CLIENT``), and so
    every request. Here the set-up runs unnamed (a ``redis_connect_func`` of
    the user's included), and a refused name leaves the connection working.
    A connect that fails (a server paused or starting, a reset) leaves the
    name for the next: else the connection would reconnect unnamed for good.
    """
    pool = pool_ref()
    name = None
    ours = pool is None or pool.owns_names  # a client_name of the user's: redis-py sends it
    if ours:
        name, connection.client_name = connection.client_name, None
    try:
        _set_up_and_name(pool, inner, connection, name)
    except BaseException:
        if ours:
            connection.client_name = name
        raise


def _set_up_and_name(
    pool: CountingPool | None,
    inner: Callable[[Any], None] | None,
    connection: Any,
    name: str | None,
) -> None:
    if inner is not None:
        inner(connection)
    else:
        set_up(connection)
    if pool is not None:
        pool.connected(connection)
    if not name or (pool is not None and not pool.names_connections):
        return  # asked once per process: the server refused
    try:
        connection.send_command("CLIENT", "SETNAME", name, check_health=False)
        reply = connection.read_response()
    except ResponseError as exc:  # read whole: the connection is clean
        if pool is not None:
            pool.names_refused(exc)
        return
    if reply not in (b"OK", "OK"):
        raise RedisConnectionError("Error setting client name")
    connection.client_name = name
