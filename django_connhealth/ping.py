"""PING one pool by a moment, through the pool's own connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_connhealth import defaults
from django_connhealth.borrow import borrow
from django_connhealth.pool import SizedConnectionPool
from django_connhealth.redispy import checkout_args, ping, ping_through_parser

if TYPE_CHECKING:
    from redis import ConnectionPool

    from django_connhealth.redispy import Moment

_CHECKOUT_ARGS = checkout_args()


def bounded_ping(pool: ConnectionPool, answer_by: Moment) -> None:
    """PING through ``pool``, giving up at ``answer_by`` whatever the socket timeout.

    ``answer_by.at`` is read when each wait starts, so a probe that joins a
    running ping extends it. A sized pool's checkout gives up just before it
    (PoolTimeoutError); the reply is awaited only until it. Through a sized
    pool the connection is borrowed (a dirty one dropped, a broken reused one
    retried once); a pool class of the user's goes through redis-py's checkout.
    """
    if not isinstance(pool, SizedConnectionPool):
        _ping_through_redis_py(pool, answer_by)
        return
    borrow(pool, answer_by.at - defaults.CHECKOUT_MARGIN, lambda c: ping(c, answer_by))


def _ping_through_redis_py(pool: ConnectionPool, answer_by: Moment) -> None:
    """:func:`bounded_ping` for a pool class of the user's: redis-py's checkout."""
    connection = pool.get_connection(*_CHECKOUT_ARGS)
    try:
        ping_through_parser(connection, answer_by)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
