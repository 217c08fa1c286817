"""PING one pool by a moment, through the pool's own connections."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redis.backoff import NoBackoff
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.borrow import borrow
from django_connhealth.pool import SizedConnectionPool
from django_connhealth.redispy import ping

if TYPE_CHECKING:
    from redis import ConnectionPool

    from django_connhealth.redispy import Moment


def bounded_ping(pool: ConnectionPool, answer_by: Moment) -> None:
    """PING through ``pool``, giving up at ``answer_by`` whatever the socket timeout.

    ``answer_by.at`` is read when each wait starts. A sized pool's checkout gives up just before it
    (PoolTimeoutError); the reply is awaited only until it. Through a sized
    pool the connection is borrowed (a dirty one dropped, a broken reused one
    retried once); for a pool class of the user's, a connection made like its own.
    """
    if not isinstance(pool, SizedConnectionPool):
        _ping_like(pool, answer_by)
        return
    borrow(pool, answer_by.at - defaults.CHECKOUT_MARGIN, lambda c: ping(c, answer_by))


def _ping_like(pool: ConnectionPool, answer_by: Moment) -> None:
    """:func:`bounded_ping` for a pool class of the user's: on a connection made like its own.

    Its class and keywords (server, credentials, db, TLS), but never taken from
    the pool, whose checkout no deadline can bound: a full pool of the user's
    must not make a busy pod look dead, nor a pool without timeouts hold the
    probe's thread past the deadline. No retry, and closed right after.
    """
    remaining = max(0.001, answer_by.at - time.monotonic())
    kwargs = dict(pool.connection_kwargs)
    for key in ("socket_timeout", "socket_connect_timeout"):
        kwargs[key] = min(kwargs.get(key) or remaining, remaining)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    connection = pool.connection_class(**kwargs)
    try:
        ping(connection, answer_by)
    finally:
        connection.disconnect()
