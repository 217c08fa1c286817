"""The one reset point of process state, in this process and in a forked child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.test import override_settings

from django_connhealth import middleware, publish
from django_connhealth.pool import SizedConnectionPool, live_pools
from django_connhealth.probes import targets
from django_connhealth.process import reset_process_state
from django_connhealth.readiness import readiness
from tests.helpers import redis_caches
from tests.servers import join_publishers

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer


def sized_pool() -> SizedConnectionPool:
    pool = cache.client.get_client().connection_pool  # type: ignore[attr-defined]
    assert isinstance(pool, SizedConnectionPool)
    return pool


def named(redis_db: RedisDB, host: str) -> list[dict[str, Any]]:
    return [e for e in redis_db.server.client_list() if f":{host}:" in e.get("name", "")]


def test_reset_closes_the_pools_and_forgets_every_piece_of_state(redis_db: RedisDB) -> None:
    host = f"reset-{uuid.uuid4().hex[:8]}"
    caches = redis_caches(redis_db.url, {"CONNHEALTH_HOST": host})
    with override_settings(CACHES=caches):
        cache.set("k", "v")
        pool = sized_pool()
        [result] = readiness.results(1.0, 0)
        assert result.status == "pass"
        [target] = targets.get()
        assert target.pool is pool
        publish.unpublish(pool)  # holds the publication lock for good
        assert publish.in_flight(pool)
        assert pool in live_pools()
        assert len(named(redis_db, host)) == 1

        reset_process_state()

        assert len(named(redis_db, host)) == 0  # every pooled connection closed
        assert live_pools() == []
        assert not publish.in_flight(pool)
        assert [t.name for t in threading.enumerate() if t.name.startswith("connhealth")] == []
    # The next cache objects (the next test's) build a new pool, and readiness pings that one.
    with override_settings(CACHES=caches):
        assert cache.get("k") == "v"
        assert sized_pool() is not pool
        [target] = targets.get()
        assert target.pool is sized_pool()
        assert [r.status for r in readiness.results(1.0, 0)] == ["pass"]


def test_reset_forgets_the_health_paths() -> None:
    with override_settings(ROOT_URLCONF="tests.health_urls"):
        found = middleware.health_paths()
        assert found
        reset_process_state()
        again = middleware.health_paths()
    assert (
        again
        == found
        == {
            "/health/": "ready",
            "/health/ready": "ready",
            "/health/live": "live",
            "/health/metrics": "metrics",
        }
    )
    assert again is not found  # looked up afresh


def test_reset_in_a_forked_child_keeps_the_pools(redis_db: RedisDB) -> None:
    """What a child runs after os.fork(): the pools its cache clients hold stay."""
    with override_settings(CACHES=redis_caches(redis_db.url)):
        cache.set("k", "v")
        pool = sized_pool()
        assert [r.status for r in readiness.results(1.0, 0)] == ["pass"]
        reset_process_state(forked=True)
        assert pool in live_pools()
        assert pool.figures().idle == 1  # not disconnected: a child leaves them to redis-py
        [target] = targets.get()
        assert target.pool is pool
        assert [r.status for r in readiness.results(1.0, 0)] == ["pass"]


CHILD_SCRIPT = """
import json, os, sys, time, warnings

import django
from django.conf import settings

from django_connhealth import sized_caches

url, host = sys.argv[1], sys.argv[2]
settings.configure(
    INSTALLED_APPS=["django_connhealth"],
    CACHES=sized_caches(
        {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        environ={"CONNHEALTH_HOST": host},
    ),
    CONNHEALTH_PUBLISH_SECONDS=60,
)
django.setup()

from django.core.cache import cache

from django_connhealth import probes, publish, readiness

cache.set("k", "v")  # the first release publishes in the background
for thread in __import__("threading").enumerate():
    if thread.name == "connhealth-publish":
        thread.join(10)
pool = cache.client.get_client().connection_pool
publish.unpublish(pool)  # holds the publication lock for good, as at a fork mid-publish
probes.prober.executor().submit(int).result()  # the prober's threads are alive
assert publish.in_flight(pool)

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive: the point
pid = os.fork()
if pid == 0:
    code = 1
    try:
        report = {"in_flight": publish.in_flight(pool), "value": cache.get("k")}
        report["statuses"] = [r.status for r in readiness.readiness.results(1.0, 0)]
        for thread in __import__("threading").enumerate():
            if thread.name == "connhealth-publish":
                thread.join(10)
        print(json.dumps(report), flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print(json.dumps({"parent_in_flight": publish.in_flight(pool), "child": pid,
                  "child_exit": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def test_forked_child_forgets_the_parents_locks_and_threads(
    redis_db: RedisDB, tmp_path: Path
) -> None:
    """A child forked mid-publication publishes under its own pid, and its probes answer."""
    host = f"fork-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "fork_child.py"
    script.write_text(textwrap.dedent(CHILD_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, str(script), redis_db.url, host],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert child == {"in_flight": False, "value": "v", "statuses": ["pass"]}
    assert parent["parent_in_flight"] is True
    assert parent["child_exit"] == 0
    with redis_db.server.client(redis_db.db) as client:
        keys = {k.decode() if isinstance(k, bytes) else k for k in client.keys("connhealth:pool:*")}
    # The parent removed its record; the child's first use published its own.
    assert keys == {f"connhealth:pool:{host}:{parent['child']}:default"}


def test_reset_while_a_publication_is_in_flight(fresh_redis: RedisServer) -> None:
    """The publication ends on its own lock: a reset meanwhile never breaks it."""
    caches = redis_caches(fresh_redis.url, {"CONNHEALTH_HOST": f"inflight-{uuid.uuid4().hex[:8]}"})
    with override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=60):
        cache.set("k", "v")  # published once
        join_publishers()
        pool = sized_pool()
        fresh_redis.pause()
        try:
            assert publish.publish_when_due(pool) == 60  # in flight, stuck on the paused server
            assert publish.in_flight(pool)
            reset_process_state()  # forgets the lock and closes the connection under it
            assert not publish.in_flight(pool)
        finally:
            fresh_redis.resume()
        join_publishers()  # a thread exception (a release of a lock not held) fails the test
        assert not publish.in_flight(pool)
