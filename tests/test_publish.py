"""Publishing pool figures (``django_connhealth.publish``) against a real redis-server.

Each test turns publishing on with ``override_settings`` (tests/settings.py turns
it off), uses the cache through Django as a view does, and reads what the pool
published back from the server. Publishing runs in short-lived threads named
``connhealth-publish``: tests join them before looking, so nothing is left
running, and pytest's threadexception plugin (an error under ``-W error``)
reports anything raised in one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core.cache import cache as default_cache
from django.test import override_settings

from django_connhealth import defaults, publish
from django_connhealth.heartbeat import heartbeat
from testproject.supervisor import read_line, reap
from tests.helpers import (
    SLOW,
    pool_of,
    redis_caches,
    report_from_child,
    unique_host,
)
from tests.servers import _get_connection, join_publishers, publisher_threads

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import RedisDB, StartRedis
    from tests.redis_server import RedisServer

PID = os.getpid()
RECORD_KEYS = {
    "leaks",
    "held_longest_seconds",
    "host",
    "pid",
    "role",
    "alias",
    "max_connections",
    "created",
    "reconnects",
    "in_use",
    "idle",
    "peak_in_use",
    "waits",
    "wait_seconds",
    "timeouts",
    "named",
    "name_refused",
    "interval",
    "ttl",
    "published_at",
}

cache: Any = default_cache


def record_key(host: str, pid: int = PID) -> str:
    return f"connhealth:pool:{host}:{pid}:default"


def read_record(client: redis.Redis, host: str, pid: int = PID) -> dict[str, Any] | None:
    value = client.get(record_key(host, pid))
    return None if value is None else json.loads(value)


def publish_settings(url: str, host: str, seconds: object, **environ: str) -> override_settings:
    caches = redis_caches(url, environ={"CONNHEALTH_HOST": host, **environ})
    return override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=seconds)


def set_calls(server: RedisServer) -> int:
    return int(server.info("commandstats").get("cmdstat_set", {}).get("calls", 0))


@pytest.fixture(autouse=True)
def _no_publisher_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The pools this test publishes for are the only ones its atexit hook knows:
    # none of an earlier test's (closed) pools is reopened by _unpublish_all().
    monkeypatch.setattr(publish, "_published", weakref.WeakSet())
    yield
    join_publishers()


# ------------------------------------------------------------------ one record


def test_release_publishes_a_record(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 1):
        before = time.time()
        cache.set("k", "v")  # the pool's first release: a record is due at once
        join_publishers()
        after = time.time()
        with redis_db.server.client(redis_db.db) as client:
            record = read_record(client, host)
            pttl = client.pttl(record_key(host))
            score = client.zscore("connhealth:pools:default", record_key(host))
            index_ttl = client.ttl("connhealth:pools:default")

    assert record is not None
    assert set(record) == RECORD_KEYS
    assert record["host"] == host
    assert record["pid"] == PID
    assert record["alias"] == "default"
    assert record["role"] == "other"  # pytest: not a server process
    assert record["max_connections"] == 3  # 1 thread + headroom 2
    assert (record["created"], record["in_use"], record["idle"]) == (1, 0, 1)
    assert record["peak_in_use"] == 1
    assert (record["waits"], record["wait_seconds"], record["timeouts"]) == (0, 0.0, 0)
    assert (record["leaks"], record["held_longest_seconds"]) == (0, 0.0)
    assert (record["named"], record["name_refused"]) == (True, False)
    assert record["interval"] == 1.0
    assert record["ttl"] == 3  # three intervals
    assert before <= record["published_at"] <= after
    assert 0 < pttl <= 3000
    assert score == pytest.approx(record["published_at"])
    assert 0 < index_ttl <= defaults.INDEX_SECONDS


def test_record_ttl_is_at_least_one_second(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 0.1):
        cache.set("k", "v")
        join_publishers()
        with redis_db.server.client(redis_db.db) as client:
            record = read_record(client, host)
            pttl = client.pttl(record_key(host))
    assert record is not None
    assert (record["interval"], record["ttl"]) == (0.1, 1)
    assert 0 < pttl <= 1000


@pytest.fixture
def no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases alone publish: no heartbeat between a test's steps (see test_heartbeat.py)."""
    monkeypatch.setattr(heartbeat, "ensure_running", lambda interval: None)


@pytest.mark.usefixtures("no_heartbeat")
def test_peak_restarts_with_each_record(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 0.2, CONNHEALTH_THREADS="3"):
        cache.set("k", "v")
        pool = pool_of(cache)
        join_publishers()
        held = [_get_connection(pool) for _ in range(3)]
        for connection in held:
            pool.release(connection)
        time.sleep(0.3)
        cache.get("k")  # due again: this record covers the three held at once
        join_publishers()
        with redis_db.server.client(redis_db.db) as client:
            busy = read_record(client, host)
        time.sleep(0.3)
        cache.get("k")
        join_publishers()
        with redis_db.server.client(redis_db.db) as client:
            quiet = read_record(client, host)
    assert busy is not None
    assert quiet is not None
    assert busy["peak_in_use"] == 3
    # Since the last record only one call ran at a time (and the publish itself).
    assert quiet["peak_in_use"] == 1
    assert quiet["published_at"] > busy["published_at"]


# ----------------------------------------------------------- once per interval


def test_at_most_one_publish_per_interval_under_32_threads(start_redis: StartRedis) -> None:
    server = start_redis()  # its own server: every SET it counts is a publish
    host = unique_host()
    interval = 0.25
    threads = 32
    stop = threading.Event()
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def hammer() -> None:
        try:
            barrier.wait(timeout=SLOW)
            while not stop.is_set():
                cache.get("k")
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    with publish_settings(server.url, host, interval, CONNHEALTH_THREADS=str(threads)):
        assert set_calls(server) == 0
        workers = [threading.Thread(target=hammer, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        started = time.monotonic()
        try:
            barrier.wait(timeout=SLOW)
            time.sleep(3.0)
        finally:
            stop.set()  # whatever happened: no thread keeps hammering later tests
            for worker in workers:
                worker.join(timeout=SLOW)
        join_publishers()
        elapsed = time.monotonic() - started
        pool = pool_of(cache)
        stats = pool.figures()
        with server.client() as client:
            members = client.zrange("connhealth:pools:default", 0, -1)
            record = read_record(client, host)

    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    sets = set_calls(server)
    # One at the first release, then at most one each time an interval has passed.
    most = int(elapsed / interval) + 1
    assert 2 <= sets <= most, (sets, most, elapsed)
    assert members == [record_key(host).encode()]
    assert record is not None
    assert record["max_connections"] == threads + 2
    assert stats.created <= stats.max_connections
    assert stats.timeouts == 0


# ------------------------------------------------------------- never waits


def test_full_pool_skips_the_publish_without_waiting(redis_db: RedisDB) -> None:
    host = unique_host()
    environ = {"CONNHEALTH_THREADS": "2", "CONNHEALTH_POOL_HEADROOM": "0"}
    with publish_settings(redis_db.url, host, 1, **environ):
        cache.get("warm-up")  # builds the pool and publishes once
        join_publishers()
        pool = pool_of(cache)
        assert pool.max_connections == 2
        with redis_db.server.client(redis_db.db) as client:
            client.delete(record_key(host))
        held = [_get_connection(pool) for _ in range(2)]
        try:
            started = time.monotonic()
            published = publish.publish(pool, 1.0)
            took = time.monotonic() - started
            # The background path too: started, skipped, its lock given back.
            assert not publish.in_flight(pool)
            assert publish.publish_when_due(pool) == 1.0
            join_publishers()
            assert not publish.in_flight(pool)
            stats = pool.figures()
            named = [
                entry
                for entry in redis_db.server.client_list()
                if entry["name"] == f"connhealth:{host}:{PID}:default"
            ]
            with redis_db.server.client(redis_db.db) as client:
                record = read_record(client, host)
        finally:
            for connection in held:
                pool.release(connection)
        join_publishers()

    assert published is False
    assert took < 1.0  # the pool's wait timeout is 2 s: it did not wait for it
    assert record is None
    assert (stats.in_use, stats.created, stats.max_connections) == (2, 2, 2)
    assert (stats.waits, stats.wait_seconds, stats.timeouts) == (0, 0.0, 0)
    assert len(named) == 2  # no connection beyond max_connections


def test_full_pool_publishes_again_once_a_connection_is_free(redis_db: RedisDB) -> None:
    host = unique_host()
    environ = {"CONNHEALTH_THREADS": "2", "CONNHEALTH_POOL_HEADROOM": "0"}
    with publish_settings(redis_db.url, host, 1, **environ):
        pool = pool_of(cache)
        held = [_get_connection(pool) for _ in range(2)]
        assert publish.publish(pool, 1.0) is False
        pool.release(held.pop())  # the first release: a publish is due
        join_publishers()
        pool.release(held.pop())
        with redis_db.server.client(redis_db.db) as client:
            record = read_record(client, host)
    assert record is not None
    assert record["in_use"] == 1
    assert record["peak_in_use"] == 2
    assert record["timeouts"] == record["waits"] == 0


# ------------------------------------------------------------ failures


def test_dead_server_never_raises_from_the_publish_thread(
    fresh_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    host = unique_host()
    caplog.set_level(logging.DEBUG, logger="django_connhealth")
    with publish_settings(fresh_redis.url, host, 0.1):
        cache.set("k", "v")
        join_publishers()
        fresh_redis.kill()
        time.sleep(0.2)  # a publish is due at the next release
        with pytest.raises(redis.ConnectionError):
            cache.get("k")  # the request gets its own error...
        join_publishers()  # ...and the publish thread none (threadexception would say)
    failures = [r for r in caplog.records if "publishing pool figures failed" in r.getMessage()]
    assert failures, caplog.text
    assert all(r.levelno == logging.DEBUG for r in failures)


def test_interval_zero_publishes_nothing(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 0):
        for number in range(20):
            cache.set(f"k{number}", number)
            assert cache.get(f"k{number}") == number
        assert publisher_threads() == []
        pool = pool_of(cache)
        # Off: the setting is looked at again only every few seconds, not per call.
        assert pool.slots.due_at > time.monotonic()
        with redis_db.server.client(redis_db.db) as client:
            keys = client.keys("connhealth:*")
    assert keys == []


@pytest.mark.parametrize("value", ["abc", -1, "nan"])
def test_malformed_setting_is_logged_once_and_nothing_published(
    value: object,
    redis_db: RedisDB,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish, "_complained", False)
    host = unique_host()
    with publish_settings(redis_db.url, host, value):
        for number in range(5):
            cache.set(f"k{number}", number)
        assert [publish.interval_now() for _ in range(3)] == [0.0, 0.0, 0.0]
        assert publisher_threads() == []
        with redis_db.server.client(redis_db.db) as client:
            keys = client.keys("connhealth:*")
    assert keys == []
    complaints = [r for r in caplog.records if r.name == "django_connhealth"]
    assert len(complaints) == 1, caplog.text
    assert complaints[0].levelno == logging.ERROR
    assert f"CONNHEALTH_PUBLISH_SECONDS={value!r} is not valid" in complaints[0].getMessage()


# ------------------------------------------------------------------ fork


def _child_report() -> dict[str, Any]:
    cache.get("k")  # the child's pool starts afresh: a record is due at once
    join_publishers()
    return {"pid": os.getpid()}


@pytest.mark.usefixtures("no_heartbeat")
def test_forked_child_publishes_under_its_own_pid(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 60):
        cache.set("k", "v")
        join_publishers()
        # Forking with other threads alive is unsafe (and deprecated from 3.12).
        assert threading.active_count() == 1, threading.enumerate()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(report_r)
            report_from_child(report_w, _child_report)
        os.close(report_w)
        try:
            report = json.loads(read_line(report_r, SLOW))
        finally:
            os.close(report_r)
            exit_code = reap(pid, SLOW)
        with redis_db.server.client(redis_db.db) as client:
            parent = read_record(client, host)
            child = read_record(client, host, pid)
            members = sorted(client.zrange("connhealth:pools:default", 0, -1))

    assert "error" not in report, report.get("error")
    assert exit_code == 0
    assert report["pid"] == pid != PID
    assert parent is not None
    assert child is not None
    assert (parent["pid"], child["pid"]) == (PID, pid)
    assert child["host"] == host
    # The child's own pool: the connection it opened, not the parent's.
    assert (child["created"], child["idle"], child["in_use"]) == (1, 1, 0)
    assert members == sorted([record_key(host).encode(), record_key(host, pid).encode()])


# ------------------------------------------------------------------ atexit


def test_unpublish_all_removes_this_process_records(redis_db: RedisDB) -> None:
    host = unique_host()
    with publish_settings(redis_db.url, host, 0.2):
        cache.set("k", "v")
        join_publishers()
        with redis_db.server.client(redis_db.db) as client:
            assert read_record(client, host) is not None
            # Another process's record, which this one must leave alone.
            client.set(record_key(host, 1), json.dumps({"pid": 1}), ex=60)
            client.zadd("connhealth:pools:default", {record_key(host, 1): time.time()})
        time.sleep(0.3)  # a publish is due again: unpublishing must not set one off
        publish.unpublish_all()
        join_publishers()
        time.sleep(0.1)
        join_publishers()
        with redis_db.server.client(redis_db.db) as client:
            record = client.get(record_key(host))
            other = client.get(record_key(host, 1))
            members = client.zrange("connhealth:pools:default", 0, -1)
    assert record is None
    assert other is not None
    assert members == [record_key(host, 1).encode()]
