"""PING one pool by a deadline, through the pool's own connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from django_connhealth import defaults
from django_connhealth.pool import SizedConnectionPool
from django_connhealth.redispy import (
    checkout_args,
    holds_unread_reply,
    is_open,
    ping,
    ping_through_parser,
)

if TYPE_CHECKING:
    from redis import ConnectionPool

    from django_connhealth.redispy import Deadline

_CHECKOUT_ARGS = checkout_args()


class Moment:
    """A ``time.monotonic()`` moment that a later probe sharing the ping may extend."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


def bounded_ping(pool: ConnectionPool, deadline: Deadline) -> None:
    """PING through ``pool``, giving up at ``deadline`` whatever the socket timeout.

    ``deadline.at`` is read when each wait starts, so a probe that joins a
    running ping extends it. A sized pool's checkout gives up just before it
    (PoolTimeoutError); the reply is awaited only until it.

    A connection reused from a sized pool that turns out broken or dirty
    (the server restarted, or closed it while idle) gets one retry on a new
    connection, as redis-py's own checkout does; a timeout does not.
    """
    if not isinstance(pool, SizedConnectionPool):
        _ping_through_redis_py(pool, deadline)
        return
    connection = pool.checkout(deadline.at - defaults.CHECKOUT_MARGIN)
    try:
        reused = is_open(connection)
        if reused and holds_unread_reply(connection):
            connection.disconnect()
            reused = False
        try:
            ping(connection, deadline)
        except RedisTimeoutError:
            raise
        except (RedisConnectionError, OSError):
            if not reused:
                raise
            connection.disconnect()
            ping(connection, deadline)
    except BaseException:
        connection.disconnect()  # a late reply must never meet the next command
        raise
    finally:
        pool.checkin(connection)


def _ping_through_redis_py(pool: ConnectionPool, deadline: Deadline) -> None:
    """:func:`bounded_ping` for a pool class of the user's: redis-py's checkout."""
    connection = pool.get_connection(*_CHECKOUT_ARGS)
    try:
        ping_through_parser(connection, deadline)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
