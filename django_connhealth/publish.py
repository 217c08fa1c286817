"""Publish this process's pool figures to the Redis each pool measures.

The command runs in a process of its own; the pools that matter live in web
workers, maybe on many hosts. So each process writes its figures, as JSON under
``connhealth:pool:<host>:<pid>:<alias>`` with a TTL of three intervals, to the
server (and db) of each of its sized pools. The pool's ``release()`` sets it off
at most every ``CONNHEALTH_PUBLISH_SECONDS`` (a request pays one clock read) and
a short-lived thread does the writing. It never waits for a connection: it takes
an idle one, or opens one if the pool has room, else it skips a round. A pool
that sees no use publishes nothing, so its record expires. A forked child
publishes under its own pid from its first use of the pool.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from redis import Redis
from redis.exceptions import RedisError

from django_connhealth.pool import PoolTimeoutError, SizedConnectionPool, wait_until

logger = logging.getLogger("django_connhealth")

KEY_PREFIX = "connhealth:pool:"
#: A record lives this many intervals, so one missed round does not hide a process.
TTL_INTERVALS = 3


#: Seconds an index entry outlives its process's last record.
INDEX_SECONDS = 3600
INDEX_PREFIX = "connhealth:pools:"


def record_key(host: str, pid: int, alias: str) -> str:
    return f"{KEY_PREFIX}{host}:{pid}:{alias}"


def index_key(alias: str) -> str:
    """A sorted set of the record keys of one alias, so readers need no SCAN."""
    return f"{INDEX_PREFIX}{alias}"


def record(pool: SizedConnectionPool, interval: float) -> dict[str, Any]:
    """This process's figures for ``pool`` (the peak since the last record written)."""
    stats = pool.stats()
    return {
        "host": pool.host,
        "pid": os.getpid(),
        "alias": pool.alias,
        **stats.as_dict(),
        "interval": interval,
        "published_at": time.time(),
    }


def publish(pool: SizedConnectionPool, interval: float) -> bool:
    """Write ``pool``'s record without waiting for a connection; False if skipped."""
    ttl = max(1, round(interval * TTL_INTERVALS))
    data = {**record(pool, interval), "ttl": ttl}
    key = record_key(pool.host, data["pid"], pool.alias)
    index = index_key(pool.alias)
    pipe = Redis(connection_pool=pool).pipeline(transaction=False)
    pipe.set(key, json.dumps(data), ex=ttl)
    pipe.zadd(index, {key: data["published_at"]})
    # Forget processes not heard from for an hour; the index lives as long.
    pipe.zremrangebyscore(index, "-inf", data["published_at"] - INDEX_SECONDS)
    pipe.expire(index, INDEX_SECONDS)
    try:
        with wait_until(0.0):  # never wait: an idle connection or room for one, or skip
            pipe.execute()
    except PoolTimeoutError:
        return False
    except (RedisError, OSError) as exc:
        logger.debug("connhealth: publishing pool figures failed: %s", type(exc).__name__)
        return False
    pool.stats(reset_peak=True)  # only once written: a skipped round keeps its peak
    return True


#: Seconds ``unpublish`` waits for a publish in flight to end.
UNPUBLISH_WAIT = 1.0


def unpublish(pool: SizedConnectionPool) -> None:
    """Remove this process's record of ``pool``; the pool publishes no more after it."""
    # Wait for a publish in flight and keep the lock, so that neither that one nor
    # one set off by the release() below puts the record back.
    pool.publishing.acquire(timeout=UNPUBLISH_WAIT)
    _published.discard(pool)
    key = record_key(pool.host, os.getpid(), pool.alias)
    pipe = Redis(connection_pool=pool).pipeline(transaction=False)
    pipe.delete(key)
    pipe.zrem(index_key(pool.alias), key)
    try:
        with wait_until(0.0):
            pipe.execute()
    except (RedisError, OSError):
        pass


def publish_seconds() -> float:
    from django_connhealth.conf import conf

    return conf.CONNHEALTH_PUBLISH_SECONDS


#: False in a process that only reads figures (the command).
enabled = True
_complained = False


def interval_now() -> float:
    """The publish interval, or 0 when publishing is off or misconfigured."""
    global _complained
    if not enabled:
        return 0.0
    try:
        return publish_seconds()
    except ImproperlyConfigured as exc:
        if not _complained:
            logger.error("connhealth: not publishing pool figures: %s", exc)
            _complained = True
        return 0.0


def publish_in_background(pool: SizedConnectionPool, interval: float) -> None:
    """Publish ``pool`` from a short-lived thread, so no request waits for it."""
    thread = threading.Thread(
        target=_publish_and_release, args=(pool, interval), name="connhealth-publish", daemon=True
    )
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (interpreter shutting down)
        pool.publishing.release()


def _publish_and_release(pool: SizedConnectionPool, interval: float) -> None:
    try:
        if publish(pool, interval):
            _published.add(pool)
    finally:
        pool.publishing.release()


_published: weakref.WeakSet[SizedConnectionPool] = weakref.WeakSet()


@atexit.register
def _unpublish_all() -> None:
    """Remove this process's records when it exits cleanly (a killed one's expire)."""
    for pool in list(_published):
        if pool.pid == os.getpid():
            unpublish(pool)
