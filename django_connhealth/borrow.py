"""Use one connection of a sized pool by a deadline, and give it back clean.

For the app's own work on the pools (readiness pings, publishing figures): the
connection is checked out without waiting past the deadline, a pooled one left
with an unread reply is dropped first, and a reused one that turns out broken
(the server restarted, or closed it while idle) gets one retry on a new
connection, as redis-py's own checkout does. A timeout is not retried, and a
connection that failed any other way is closed: a late reply must never meet
the next command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from django_connhealth.redispy import holds_unread_reply, is_open

if TYPE_CHECKING:
    from collections.abc import Callable

    from django_connhealth.pool import SizedConnectionPool

T = TypeVar("T")


def borrow(pool: SizedConnectionPool, deadline: float, use: Callable[[Any], T]) -> T:
    """``use(connection)`` on a connection of ``pool`` checked out by ``deadline``.

    ``deadline`` is a ``time.monotonic()`` moment ("now" never waits); a pool
    with no connection free by then raises PoolTimeoutError.
    """
    connection = pool.checkout(deadline)
    try:
        reused = is_open(connection)
        if reused and holds_unread_reply(connection):
            connection.disconnect()
            reused = False
        try:
            return use(connection)
        except RedisTimeoutError:
            raise
        except (RedisConnectionError, OSError):
            if not reused:
                raise
            connection.disconnect()
            return use(connection)
    except ResponseError:
        raise  # an error reply, read whole: the connection is clean
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.checkin(connection)
