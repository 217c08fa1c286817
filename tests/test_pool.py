"""SizedConnectionPool against a real redis-server, driven through Django's cache API.

Every test configures CACHES with ``sized_caches`` (via ``tests.helpers.redis_caches``)
and talks to Redis through ``django.core.cache.cache`` / ``caches["default"]``; the
pool under test is the one django-redis hands to that cache. Each test uses its own
``CONNHEALTH_HOST``, so the server-side connection names it looks for are its own.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import traceback
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core.cache import cache as default_cache
from django.core.cache import caches
from django.test import override_settings
from django_redis.exceptions import ConnectionInterrupted

from django_connhealth.factory import ConnectionFactory
from django_connhealth.naming import client_name
from django_connhealth.pool import PoolFigures, PoolTimeoutError, SizedConnectionPool, live_pools
from testproject.supervisor import free_port, read_line, reap
from tests.helpers import (
    SLOW,
    acquire,
    alone_or_rerun,
    pool_of,
    redis_caches,
    report_from_child,
    unique_host,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.conftest import RedisDB, StartRedis
    from tests.redis_server import RedisServer

PID = os.getpid()
PASSWORD = "s3cret"

#: ``django.core.cache.cache`` (a per-thread proxy), typed loosely: django-redis adds ``client``.
cache: Any = default_cache


# ---------------------------------------------------------------------- helpers


def our_name(host: str, pid: int = PID, alias: str = "default") -> str:
    return f"connhealth:{host}:{pid}:{alias}"


def named(server: RedisServer, name: str) -> list[dict[str, str]]:
    """CLIENT LIST entries carrying exactly ``name``."""
    return [entry for entry in server.client_list() if entry.get("name") == name]


def raised_through_cache(exc: BaseException) -> BaseException:
    """Check how django-redis surfaced a Redis error; return that Redis error.

    django-redis's client wraps it in ConnectionInterrupted, and ``RedisCache``
    (unless DJANGO_REDIS_IGNORE_EXCEPTIONS) raises the wrapped error again: the caller
    of ``cache.get()`` gets the Redis error, with ConnectionInterrupted as its context.
    """
    assert isinstance(exc, redis.RedisError)
    interrupted = exc.__context__
    assert isinstance(interrupted, ConnectionInterrupted)
    assert interrupted.__cause__ is exc
    return exc


def release(pool: Any, connection: Any) -> None:
    pool.release(connection)


def pools_for(port: int, db: int, host: str) -> list[SizedConnectionPool]:
    """This test's pools (other threads' cache objects may keep earlier tests' alive)."""
    gc.collect()
    return [
        pool
        for pool in live_pools()
        if pool.connection_kwargs.get("port") == port
        and pool.connection_kwargs.get("db") == db
        and pool.host == host
    ]


def run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads released together; return their errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=SLOW)
            target(index)
        except BaseException as exc:  # reported to the test, never lost
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SLOW)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


# ------------------------------------------------------- 1. many threads, one pool


THREADS = 64


def test_64_threads_share_one_pool_of_8_through_django_cache(redis_db: RedisDB) -> None:
    host = unique_host()
    name = our_name(host)
    config = redis_caches(
        redis_db.url, environ={"CONNHEALTH_THREADS": "6", "CONNHEALTH_HOST": host}
    )
    options: Any = config["default"]["OPTIONS"]
    assert options["CONNECTION_POOL_KWARGS"]["max_connections"] == 8

    seen_pools: list[Any] = []
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(len(named(redis_db.server, name)))
            time.sleep(0.005)

    def work(index: int) -> None:
        for step in range(3):
            key = f"k:{index}:{step}"
            cache.set(key, {"i": index, "step": step})
            assert cache.get(key) == {"i": index, "step": step}
        client = cache.client.get_client()
        seen_pools.append(client.connection_pool)
        # Holds a pooled connection of the same pool for 50 ms.
        assert client.blpop("nothing", 0.05) is None

    with override_settings(CACHES=config):
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            errors = run_threads(THREADS, work)
        finally:
            done.set()
            sampler.join(timeout=SLOW)
        assert not sampler.is_alive()
        assert errors == []

        # All 64 Django cache objects (one per thread) used one pool: the factory's.
        assert len(seen_pools) == THREADS
        pool = seen_pools[0]
        assert all(seen is pool for seen in seen_pools)
        assert isinstance(pool, SizedConnectionPool)
        assert ConnectionFactory.pools.as_dict()[redis_db.url] is pool
        assert pools_for(redis_db.server.port, redis_db.db, host) == [pool]

        stats = pool.figures()
        assert stats.max_connections == 8
        assert stats.peak_in_use == 8
        assert stats.created == 8  # the peak opened every slot, and no more
        assert stats.waits > 0
        assert stats.wait_seconds > 0
        assert stats.timeouts == 0
        assert stats.in_use == 0
        assert stats.idle == stats.created

        assert samples, "the sampler never read CLIENT LIST"
        assert max(samples) <= 8
        assert len(named(redis_db.server, name)) == stats.created


# ----------------------------------------------------- 2. wait timeout < hold time


def assert_pool_timeout_message(exc: BaseException) -> None:
    text = str(exc)
    assert "'default'" in text
    assert "all 2 connections" in text
    assert "0.05 s" in text
    assert "CONNHEALTH_POOL_HEADROOM" in text
    assert "max_connections" in text
    assert PASSWORD not in text


def test_pool_timeout_raises_clear_error_through_django_cache(start_redis: StartRedis) -> None:
    server = start_redis(password=PASSWORD)
    url = server.url_for(1)
    assert PASSWORD in url
    config = redis_caches(
        url,
        environ={"CONNHEALTH_HOST": unique_host()},
        CONNECTION_POOL_KWARGS={"max_connections": 2, "timeout": 0.05},
    )
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        assert (pool.max_connections, pool.timeout) == (2, 0.05)

        # Deterministic: both connections held, so the next calls must time out.
        held = [acquire(pool), acquire(pool)]
        try:
            with pytest.raises(PoolTimeoutError) as info:
                cache.get("k")
            with pytest.raises(ConnectionInterrupted) as wrapped:
                cache.client.get("k")  # django-redis's client, below RedisCache
        finally:
            for connection in held:
                release(pool, connection)

        error = raised_through_cache(info.value)
        assert isinstance(error, redis.ConnectionError)
        assert error.__cause__ is None
        assert_pool_timeout_message(error)
        assert PASSWORD not in "".join(traceback.format_exception(error))
        cause = wrapped.value.__cause__
        assert isinstance(cause, PoolTimeoutError)
        assert_pool_timeout_message(cause)
        assert str(wrapped.value) == f"Redis PoolTimeoutError: {cause}"
        assert PASSWORD not in "".join(traceback.format_exception(wrapped.value))
        stats = pool.figures()
        assert (stats.timeouts, stats.waits, stats.peak_in_use) == (2, 2, 2)
        assert (stats.in_use, stats.idle, stats.created) == (0, 2, 2)
        assert stats.wait_seconds >= 0.04

        # Threads holding connections for 0.5 s: the others give up after 0.05 s.
        lock = threading.Lock()
        done: list[str] = []

        def hold(_index: int) -> None:
            client = cache.client.get_client()
            try:
                assert client.blpop("nothing", 0.5) is None
            except PoolTimeoutError as exc:
                assert_pool_timeout_message(exc)
                with lock:
                    done.append("timeout")
            else:
                with lock:
                    done.append("held")

        assert run_threads(6, hold) == []
        assert len(done) == 6
        assert done.count("held") >= 2
        assert done.count("timeout") >= 1
        stats = pool.figures()
        assert stats.timeouts == 2 + done.count("timeout")
        assert stats.in_use == 0
        assert stats.created == 2
        assert cache.get("k") == "v"


# ------------------------------------------------------------ 3. connection names


def test_every_connection_is_named_for_host_pid_and_alias(fresh_redis: RedisServer) -> None:
    config = redis_caches(fresh_redis.url_for(3), environ={"CONNHEALTH_HOST": "web-1"})
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        held = [acquire(pool) for _ in range(3)]
        for connection in held:
            release(pool, connection)
        assert pool.figures().created == 3

        expected = client_name("web-1", os.getpid(), "default")
        assert expected == f"connhealth:web-1:{os.getpid()}:default"
        entries = fresh_redis.client_list()  # a fresh server: all but the helper are ours
        assert sorted((entry["name"], entry["db"]) for entry in entries) == [(expected, "3")] * 3
        assert cache.client.get_client().client_getname() in (expected, expected.encode())


def test_user_client_name_wins(fresh_redis: RedisServer) -> None:
    config = redis_caches(
        fresh_redis.url_for(2),
        environ={"CONNHEALTH_HOST": "web-1"},
        CONNECTION_POOL_KWARGS={"client_name": "mine"},
    )
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        held = [acquire(pool), acquire(pool)]
        for connection in held:
            release(pool, connection)
        assert [entry["name"] for entry in fresh_redis.client_list()] == ["mine", "mine"]


def test_a_connection_whose_connect_failed_is_named_when_it_connects_again(
    fresh_redis: RedisServer,
) -> None:
    """Its set-up timed out (Redis paused): the next connect names it all the same.

    Seen under load: after Redis was paused for 5 s, every connection of every
    gunicorn worker reconnected unnamed, for good.
    """
    config = redis_caches(
        fresh_redis.url, environ={"CONNHEALTH_HOST": "web-1"},
        CONNECTION_POOL_KWARGS={"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
    )  # fmt: skip
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        connection = acquire(pool)
        connection.disconnect()
        fresh_redis.pause()
        try:
            with pytest.raises(redis.TimeoutError):
                connection.connect()  # accepted by the kernel, its set-up never answered
        finally:
            fresh_redis.resume()
        connection.connect()
        release(pool, connection)
        names = [entry["name"] for entry in fresh_redis.client_list()]
    assert names == [client_name("web-1", os.getpid(), "default")]


# -------------------------------------------------------------------- 4. fork


def _child_report(pool: SizedConnectionPool) -> dict[str, Any]:
    """What the forked child sees of the pool it inherited, and of the connection it opens."""
    before = pool.figures().as_dict()
    value = cache.get("k")
    conn_name = cache.client.get_client().client_getname()
    if isinstance(conn_name, bytes):
        conn_name = conn_name.decode()
    return {
        "pid": os.getpid(),
        "value": value,
        "name": conn_name,
        "same_pool": pool_of(cache) is pool,
        "before": before,
        "after": pool.figures().as_dict(),
    }


def test_forked_child_opens_its_own_named_connection(
    redis_db: RedisDB, request: pytest.FixtureRequest
) -> None:
    if not alone_or_rerun(request):
        return
    host = unique_host()
    config = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": host})
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        parent_before = pool.figures()
        assert (parent_before.max_connections, parent_before.created) == (3, 1)
        assert len(named(redis_db.server, our_name(host))) == 1

        # Forking with other threads alive is unsafe (and deprecated from 3.12):
        # a sized pool starts none of its own.
        assert threading.active_count() == 1, threading.enumerate()
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(report_r)
            os.close(go_w)
            # The child holds its connection open until the parent has looked.
            report_from_child(report_w, lambda: _child_report(pool), hold_fd=go_r)
        os.close(report_w)
        os.close(go_r)
        try:
            report = json.loads(read_line(report_r, SLOW))
            assert "error" not in report, report.get("error")
            child_entries = named(redis_db.server, our_name(host, pid))
            parent_entries = named(redis_db.server, our_name(host))
        finally:
            os.close(go_w)
            os.close(report_r)
            exit_code = reap(pid, SLOW)
        assert exit_code == 0

        assert report["pid"] == pid != PID
        assert report["value"] == "v"
        assert report["name"] == our_name(host, pid)
        assert report["same_pool"] is True
        # The child's pool starts afresh: nothing created, nothing in use.
        assert report["before"] == {
            "max_connections": 3,
            "created": 0,
            "reconnects": 0,
            "in_use": 0,
            "idle": 0,
            "peak_in_use": 0,
            "waits": 0,
            "wait_seconds": 0.0,
            "timeouts": 0,
        }
        assert report["after"]["created"] == 1
        assert report["after"]["in_use"] == 0
        assert report["after"]["idle"] == 1
        assert report["after"]["peak_in_use"] == 1
        # A new server connection named with the child's pid; the parent's is untouched.
        assert len(child_entries) == 1
        assert len(parent_entries) == 1
        assert child_entries[0]["id"] != parent_entries[0]["id"]

        assert pool.figures() == parent_before
        assert cache.get("k") == "v"
        assert pool.figures().created == 1
        assert len(named(redis_db.server, our_name(host))) == 1


# --------------------------------------------------------------- 5. stats figures


def test_stats_reset_peak_and_consistency(redis_db: RedisDB) -> None:
    config = redis_caches(
        redis_db.url, environ={"CONNHEALTH_THREADS": "6", "CONNHEALTH_HOST": unique_host()}
    )
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)

        def check(stats: PoolFigures) -> None:
            free_slots = len(pool.slots.queue)
            assert stats.in_use + free_slots == stats.max_connections == 8
            assert stats.in_use + stats.idle == stats.created <= stats.max_connections

        held = [acquire(pool) for _ in range(3)]
        release(pool, held.pop())
        release(pool, held.pop())
        stats = pool.figures()
        check(stats)
        assert (stats.in_use, stats.idle, stats.created, stats.peak_in_use) == (1, 2, 3, 3)
        assert (stats.waits, stats.wait_seconds, stats.timeouts) == (0, 0.0, 0)

        old = pool.figures()
        pool.restart_peak()
        assert old == stats
        assert old.peak_in_use == 3
        assert pool.figures().peak_in_use == 1  # the use at the reset

        held.append(acquire(pool))
        assert pool.figures().peak_in_use == 2
        for connection in held:
            release(pool, connection)
        final = pool.figures()
        check(final)
        assert (final.in_use, final.idle, final.created, final.peak_in_use) == (0, 3, 3, 2)
        assert pool.figures().peak_in_use == 2
        pool.restart_peak()
        assert pool.figures().peak_in_use == 0
        assert final.as_dict() == {
            "max_connections": 8,
            "created": 3,
            "reconnects": 0,
            "in_use": 0,
            "idle": 3,
            "peak_in_use": 2,
            "waits": 0,
            "wait_seconds": 0.0,
            "timeouts": 0,
        }


# -------------------------------------------------------- 6. retries and timeouts


@pytest.fixture
def host() -> str:
    return unique_host()


@pytest.fixture
def fresh_cache(fresh_redis: RedisServer, host: str) -> Iterator[RedisServer]:
    """Django's cache on ``fresh_redis`` db 0, 0.3 s socket timeout, one connection open."""
    config = redis_caches(fresh_redis.url, environ={"CONNHEALTH_HOST": host}, SOCKET_TIMEOUT=0.3)
    with override_settings(CACHES=config):
        cache.set("k", "v")
        try:
            yield fresh_redis
        finally:
            if fresh_redis.paused:
                fresh_redis.resume()


def test_connection_killed_server_side_is_replaced(redis_db: RedisDB, host: str) -> None:
    config = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": host})
    with override_settings(CACHES=config):
        cache.set("k", "v")
        pool = pool_of(cache)
        (entry,) = named(redis_db.server, our_name(host))
        with redis_db.server.client() as admin:
            assert admin.client_kill_filter(_id=entry["id"]) == 1
        wait_for(lambda: not named(redis_db.server, our_name(host)))

        assert cache.get("k") == "v"
        (again,) = named(redis_db.server, our_name(host))
        assert again["id"] != entry["id"]
        stats = pool.figures()
        # one connection object, connected twice: the churn shows
        assert (stats.created, stats.reconnects, stats.in_use, stats.idle) == (2, 1, 0, 1)


def test_command_is_retried_when_its_connection_drops(redis_db: RedisDB, host: str) -> None:
    """A connection killed while a command waits on it: the command is sent again."""
    config = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": host}, SOCKET_TIMEOUT=10)
    with override_settings(CACHES=config):
        client = cache.client.get_client()
        outcome: list[Any] = []

        def blocked_pop() -> None:
            try:
                outcome.append(client.blpop("queue", 8))
            except BaseException as exc:
                outcome.append(exc)

        def is_blocked() -> bool:
            return any("b" in entry["flags"] for entry in named(redis_db.server, our_name(host)))

        thread = threading.Thread(target=blocked_pop, daemon=True)
        thread.start()
        try:
            wait_for(lambda: is_blocked() or not thread.is_alive())
            assert outcome == []
            (entry,) = named(redis_db.server, our_name(host))
            with redis_db.server.client(redis_db.db) as admin:
                assert admin.client_kill_filter(_id=entry["id"]) == 1
                # Only a re-sent BLPOP, on a new connection, can receive this.
                admin.lpush("queue", "x")
        finally:
            thread.join(timeout=SLOW)
        assert not thread.is_alive()
        assert outcome == [(b"queue", b"x")]
        (again,) = named(redis_db.server, our_name(host))
        assert again["id"] != entry["id"]
        figures = pool_of(cache).figures()
        assert (figures.created, figures.reconnects) == (2, 1)  # the connect the retry made


def test_restarted_server_is_reconnected(fresh_cache: RedisServer, host: str) -> None:
    pool = pool_of(cache)
    fresh_cache.restart()
    assert cache.get("k") is None  # a new server, empty, but it answers
    cache.set("k", "again")
    assert cache.get("k") == "again"
    assert [entry["name"] for entry in fresh_cache.client_list()] == [our_name(host)]
    stats = pool.figures()
    # one connection object, connected to each server: one reconnect
    assert (stats.created, stats.reconnects, stats.in_use, stats.timeouts) == (2, 1, 0, 0)


def test_killed_server_fails_fast(fresh_cache: RedisServer) -> None:
    pool = pool_of(cache)
    fresh_cache.kill()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError) as info:
        cache.get("k")
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    raised_through_cache(info.value)
    assert not isinstance(info.value, PoolTimeoutError)
    stats = pool.figures()
    assert (stats.in_use, stats.timeouts, stats.waits) == (0, 0, 0)


def test_paused_server_fails_within_socket_timeout_without_retry(
    fresh_cache: RedisServer,
) -> None:
    pool = pool_of(cache)
    fresh_cache.pause()
    # On the open connection: the GET is sent, no answer comes.
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError) as info:
        cache.get("k")
    elapsed = time.monotonic() - started
    raised_through_cache(info.value)
    assert 0.25 <= elapsed < 2 * 0.3

    # On a new connection: the kernel accepts it, the handshake gets no answer.
    pool.disconnect()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError) as info:
        cache.get("k")
    elapsed = time.monotonic() - started
    raised_through_cache(info.value)
    assert 0.25 <= elapsed < 2 * 0.3
    assert pool.figures().in_use == 0

    fresh_cache.resume()
    assert cache.get("k") == "v"


# ------------------------------------------------------------ 7. live_pools()


def test_live_pools_holds_pools_weakly(redis_db: RedisDB) -> None:
    alias = f"weak-{uuid.uuid4().hex[:8]}"
    pool = SizedConnectionPool(
        host=redis_db.server.host,
        port=redis_db.server.port,
        db=redis_db.db,
        max_connections=3,
        connhealth_alias=alias,
        connhealth_host="web-1",
    )
    client = redis.Redis(connection_pool=pool)
    assert client.ping() is True
    assert [entry["name"] for entry in named(redis_db.server, our_name("web-1", alias=alias))]
    assert pool in live_pools()
    assert [p for p in live_pools() if p.alias == alias] == [pool]

    client.close()
    pool.disconnect()
    ref = weakref.ref(pool)
    del client, pool
    gc.collect()
    assert ref() is None
    assert [p for p in live_pools() if p.alias == alias] == []


# ------------------------------------------------ 9. not every error is a timeout


def test_refused_connection_is_not_a_pool_timeout() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    config = redis_caches(url, environ={"CONNHEALTH_HOST": unique_host()})
    with override_settings(CACHES=config):
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError) as info:
            cache.get("k")
        assert time.monotonic() - started < 2.0
        raised_through_cache(info.value)
        assert not isinstance(info.value, PoolTimeoutError)
        assert "Connection refused" in str(info.value)
        with pytest.raises(ConnectionInterrupted) as wrapped:
            cache.client.get("k")
        assert isinstance(wrapped.value.__cause__, redis.ConnectionError)
        assert not isinstance(wrapped.value.__cause__, PoolTimeoutError)

        pool = pool_of(caches["default"])
        with pytest.raises(redis.ConnectionError) as raw:
            redis.Redis(connection_pool=pool).ping()
        assert not isinstance(raw.value, PoolTimeoutError)
        stats = pool.figures()
        # a connection was made, but never connected: no connect to count
        assert (stats.in_use, stats.timeouts, stats.waits, stats.created) == (0, 0, 0, 0)
        assert len(pool.slots.queue) == stats.max_connections  # every slot came back


# ------------------------------------------------ an ACL user without client|setname


def limited_user(server: RedisServer, *refused: str) -> str:
    """A URL for a new ACL user allowed everything but ``refused`` commands."""
    user = f"limited{uuid.uuid4().hex[:6]}"
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", *(f"-{c}" for c in refused)
        )
    return f"redis://{user}:pw@127.0.0.1:{server.port}/0"


def test_refused_client_setname_leaves_connections_working_unnamed(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_redis()
    url = limited_user(server, "client|setname")
    host = unique_host()
    with (
        override_settings(CACHES=redis_caches(url, {"CONNHEALTH_HOST": host})),
        caplog.at_level("WARNING", logger="django_connhealth"),
    ):
        default_cache.set("k", "v")
        assert default_cache.get("k") == "v"
        pool = pool_of(default_cache)
        held = [acquire(pool) for _ in range(2)]  # more connections: nobody asks again
        for connection in held:
            pool.release(connection)
        assert default_cache.get("k") == "v"
        assert pool.names_connections is False
        assert pool.figures().created == 2
        ours = [e for e in server.client_list() if e["user"].startswith("limited")]
    assert len(ours) == 2
    assert all(e["name"] == "" for e in ours)
    warnings = [r for r in caplog.records if "refused CLIENT SETNAME" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # one per process, not one per connection
    assert "Grant the ACL user +client|setname" in warnings[0].getMessage()
    assert "pw" not in caplog.text.replace("permissions", "")


def test_user_that_may_name_keeps_its_names(start_redis: StartRedis) -> None:
    server = start_redis()
    url = limited_user(server, "client|list")
    host = unique_host()
    with override_settings(CACHES=redis_caches(url, {"CONNHEALTH_HOST": host})):
        default_cache.set("k", "v")
        assert pool_of(default_cache).names_connections is True
    names = [e["name"] for e in server.client_list() if e["user"].startswith("limited")]
    assert names == [client_name(host, os.getpid(), "default")]


def test_server_without_client_command_leaves_connections_working_unnamed(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """As a proxy that knows no CLIENT (or Redis 6's ACL wording): no text is matched."""
    server = start_redis(extra_args=["--rename-command", "CLIENT", ""])
    with (
        override_settings(CACHES=redis_caches(server.url, {"CONNHEALTH_HOST": unique_host()})),
        caplog.at_level("WARNING", logger="django_connhealth"),
    ):
        default_cache.set("k", "v")
        assert default_cache.get("k") == "v"
        pool = pool_of(default_cache)
        assert (pool.names_connections, pool.name_refused) == (False, True)
    [warning] = [r for r in caplog.records if "refused CLIENT SETNAME" in r.getMessage()]
    assert "unknown command" in warning.getMessage()


def test_users_own_client_name_is_kept_and_not_a_refusal(redis_db: RedisDB) -> None:
    caches = redis_caches(redis_db.url, CONNECTION_POOL_KWARGS={"client_name": "mine"})
    with override_settings(CACHES=caches):
        default_cache.set("k", "v")
        pool = pool_of(default_cache)
        assert (pool.names_connections, pool.name_refused) == (False, False)
    assert "mine" in [e["name"] for e in redis_db.server.client_list()]


def test_users_own_redis_connect_func_runs_and_the_refusal_still_leaves_it_working(
    start_redis: StartRedis,
) -> None:
    server = start_redis()
    url = limited_user(server, "client|setname")
    calls: list[str | None] = []

    def connect(connection: Any) -> None:
        calls.append(connection.client_name)  # unnamed during the set-up
        connection.on_connect()

    caches = redis_caches(url, CONNECTION_POOL_KWARGS={"redis_connect_func": connect})
    with override_settings(CACHES=caches):
        default_cache.set("k", "v")
        assert default_cache.get("k") == "v"
        assert pool_of(default_cache).name_refused is True
    assert calls == [None]


@pytest.mark.parametrize("extra", [[], ["--maxclients", "1"]], ids=["no password", "full"])
def test_a_refused_connection_raises_the_servers_error(
    start_redis: StartRedis, extra: list[str]
) -> None:
    """A server that refuses a new connection (NOAUTH, maxclients): its error, once.

    redis-py 8's own set-up health-checks each command it sends, and the check's
    reconnect sets up again: without end, a RecursionError on every request.
    """
    password = None if extra else "r1ght-secret"
    server = start_redis(password=password, extra_args=extra)
    url = f"redis://{server.host}:{server.port}/0"  # no password given
    holder = redis.Redis(host=server.host, port=server.port, password=password)
    if extra:
        holder.ping()  # takes the only client slot
    try:
        # as sized_caches() fills it: a health check interval and retries
        pool = SizedConnectionPool.from_url(
            url, max_connections=2, timeout=0.5, health_check_interval=30, connhealth_retries=2
        )
        client = redis.Redis(connection_pool=pool)
        with pytest.raises(redis.ConnectionError) as excinfo:  # AuthenticationError too
            client.ping()
        assert not isinstance(excinfo.value.__context__, RecursionError)
        text = str(excinfo.value).lower()
        assert ("authenticat" in text) if not extra else ("max number of clients" in text), text
        pool.disconnect()
    finally:
        holder.close()
