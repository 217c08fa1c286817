"""The heartbeat (``django_connhealth.heartbeat``): idle pools keep publishing, on a real Redis.

The fleet under gunicorn, idle for seconds, is in test_connhealth.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from django.core.cache import cache as default_cache
from django.test import override_settings

from django_connhealth.heartbeat import heartbeat
from django_connhealth.pool import set_due_hook
from django_connhealth.process import reset_process_state
from django_connhealth.publish import publish_when_due, record_key
from tests.helpers import redis_caches, unique_host, wait_for
from tests.servers import join_publishers

if TYPE_CHECKING:
    from tests.conftest import RedisDB

cache: Any = default_cache
INTERVAL = 0.2


def heartbeat_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "connhealth-heartbeat"]


def published_at(redis_db: RedisDB, host: str) -> float | None:
    with redis_db.server.client(redis_db.db) as client:
        value = client.get(record_key(host, os.getpid(), "default"))
    return None if value is None else float(json.loads(value)["published_at"])


def test_an_idle_pool_keeps_publishing(redis_db: RedisDB) -> None:
    host = unique_host()
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": host})
    with override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=INTERVAL):
        cache.set("k", "v")  # the one use: no release after it
        wait_for(lambda: published_at(redis_db, host) is not None, what="the first record")
        first = published_at(redis_db, host)
        assert first is not None
        seen = {first}
        deadline = time.monotonic() + 10 * INTERVAL
        while time.monotonic() < deadline:  # ten intervals without a request
            stamp = published_at(redis_db, host)
            assert stamp is not None, "the record of an idle pool expired"
            seen.add(stamp)
            time.sleep(INTERVAL / 4)
        assert len(heartbeat_threads()) == 1
        join_publishers()
    # about one publication per interval: never none, never one per tick
    assert 6 <= len(seen) <= 12, sorted(seen)


def test_no_heartbeat_while_publishing_is_off(redis_db: RedisDB) -> None:
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": unique_host()})
    with override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=0):
        cache.set("k", "v")
        assert heartbeat_threads() == []
        assert not heartbeat.running


def test_the_reset_stops_the_heartbeat_and_the_next_use_starts_it(redis_db: RedisDB) -> None:
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": unique_host()})
    with override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=INTERVAL):
        cache.set("k", "v")
        assert heartbeat.running
        [first] = heartbeat_threads()
        join_publishers()
        reset_process_state()
        assert not first.is_alive()
        assert heartbeat_threads() == []
        time.sleep(INTERVAL)  # the next publication is due
        cache.set("k", "v")
        [second] = heartbeat_threads()
        assert second is not first
        join_publishers()


def test_a_beat_of_a_heartbeat_being_stopped_never_starts_another(redis_db: RedisDB) -> None:
    """stop() forgets the thread while its beat may still publish (which starts a heartbeat)."""
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": unique_host()})
    stopped_from_a_beat = threading.Event()

    def stop_then_publish(pool: Any) -> float:
        if threading.current_thread().name == "connhealth-heartbeat":
            heartbeat.stop()  # as a reset would, right now
            stopped_from_a_beat.set()
        return publish_when_due(pool)

    with override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=INTERVAL):
        set_due_hook(stop_then_publish)
        try:
            cache.set("k", "v")  # starts the heartbeat; its next beat stops it
            assert stopped_from_a_beat.wait(10 * INTERVAL)
            wait_for(lambda: not [t for t in heartbeat_threads() if t.is_alive()], 5.0)
            time.sleep(4 * INTERVAL)  # had the beat started another, it would run now
            assert heartbeat_threads() == []
            join_publishers()
        finally:
            set_due_hook(publish_when_due)
