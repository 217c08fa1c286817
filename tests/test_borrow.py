"""``borrow`` (``django_connhealth.borrow``): one pooled connection by a deadline, against a real
redis-server: a broken reused connection retried once, a dirty one dropped, an error reply
kept, a timeout not retried, and the connection always given back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core.cache import cache
from django.test import override_settings

from django_connhealth.borrow import borrow
from django_connhealth.errors import PoolTimeoutError
from django_connhealth.redispy import run_commands
from tests.helpers import acquire, pool_of, redis_caches

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django_connhealth.pool import SizedConnectionPool
    from tests.redis_server import RedisServer


@pytest.fixture
def pool(fresh_redis: RedisServer) -> Iterator[SizedConnectionPool]:
    """A sized pool of 3 with one idle connection open."""
    with override_settings(CACHES=redis_caches(fresh_redis.url, {"CONNHEALTH_THREADS": "1"})):
        cache.set("warm-up", 1)  # builds the pool and leaves one connection idle
        sized = pool_of(cache)
        borrow(sized, time.monotonic(), lambda c: run_commands(c, [("SET", "k", "v")]))
        assert sized.figures().idle == 1
        yield sized


def get(connection: Any) -> Any:
    return run_commands(connection, [("GET", "k")])[0]


def test_broken_reused_connection_is_retried_once_on_a_new_one(
    pool: SizedConnectionPool, fresh_redis: RedisServer
) -> None:
    with fresh_redis.client() as helper:
        assert helper.client_kill_filter(_type="normal", skipme=True) == 1
    assert borrow(pool, time.monotonic(), get) == b"v"
    figures = pool.figures()
    assert (figures.in_use, figures.idle) == (0, 1)  # given back, connected again


def test_new_connection_that_fails_is_not_retried(fresh_redis: RedisServer) -> None:
    with override_settings(CACHES=redis_caches(fresh_redis.url)):
        sized = pool_of(cache)
        fresh_redis.kill()
        calls = []

        def use(connection: Any) -> Any:
            calls.append(connection)
            return get(connection)

        with pytest.raises(redis.ConnectionError):
            borrow(sized, time.monotonic(), use)
        assert len(calls) == 1
        assert sized.figures().in_use == 0


def test_dirty_connection_is_dropped_before_use(
    pool: SizedConnectionPool, fresh_redis: RedisServer
) -> None:
    connection = acquire(pool)
    connection.send_command("PING")  # its reply is never read
    assert connection.can_read(timeout=1.0)  # ...and now waits in the parser
    pool.release(connection)
    assert borrow(pool, time.monotonic(), get) == b"v"  # not b"PONG"
    assert borrow(pool, time.monotonic(), get) == b"v"


def test_error_reply_keeps_the_connection(pool: SizedConnectionPool) -> None:
    [connection] = [slot for slot in pool.slots.queue if slot is not None]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        borrow(pool, time.monotonic(), lambda c: run_commands(c, [("LPUSH", "k", "x")]))
    assert pool.figures().idle == 1
    assert [slot for slot in pool.slots.queue if slot is not None] == [connection]
    assert borrow(pool, time.monotonic(), get) == b"v"


def test_timeout_is_not_retried_and_closes_the_connection(
    pool: SizedConnectionPool, fresh_redis: RedisServer
) -> None:
    fresh_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            borrow(pool, time.monotonic(), get)
        took = time.monotonic() - started
    finally:
        fresh_redis.resume()
    assert took < 2 * 1.0  # one socket timeout (1.0 s), not two
    assert pool.figures().idle == 0  # a late reply must never meet the next command
    assert borrow(pool, time.monotonic(), get) == b"v"


def test_full_pool_by_the_deadline_raises_without_waiting(pool: SizedConnectionPool) -> None:
    held = [acquire(pool) for _ in range(pool.max_connections)]
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError, match="by the caller's deadline"):
            borrow(pool, time.monotonic(), get)
        assert time.monotonic() - started < 0.5
    finally:
        for connection in held:
            pool.release(connection)
