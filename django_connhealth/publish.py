"""Publish this process's pool figures to the Redis each pool measures.

The command runs in a process of its own; the pools that matter live in web
workers, maybe on many hosts. So each process writes its figures, as JSON under
``connhealth:pool:<host>:<pid>:<alias>`` with a TTL of three intervals, to the
server (and db) of each of its sized pools. :func:`publish_when_due` is the
pools' due hook: a release sets it off at most every ``CONNHEALTH_PUBLISH_SECONDS`` (a
request pays one clock read), and so does this process's heartbeat for an
idle pool, from the first publication until the process exits; a short-lived
thread does the writing. It never waits for a connection: it takes an idle
one, or opens one if the pool has room, else it skips a round. A forked child
publishes under its own pid from its first use of the pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

from django_connhealth import defaults, leaks
from django_connhealth.borrow import borrow
from django_connhealth.conf import conf
from django_connhealth.heartbeat import heartbeat
from django_connhealth.pool import PoolTimeoutError, SizedConnectionPool
from django_connhealth.redispy import run_commands
from django_connhealth.sizing import process_role

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from threading import Lock

logger = logging.getLogger("django_connhealth")


def record_key(host: str, pid: int, alias: str) -> str:
    return f"{defaults.RECORD_KEY_PREFIX}{host}:{pid}:{alias}"


def index_key(alias: str) -> str:
    """A sorted set of the record keys of one alias, so readers need no SCAN."""
    return f"{defaults.INDEX_KEY_PREFIX}{alias}"


def record(pool: SizedConnectionPool, interval: float) -> dict[str, Any]:
    """This process's figures for ``pool`` (the peak since the last record written)."""
    return {
        "host": pool.host,
        "pid": os.getpid(),
        "role": role(),
        "alias": pool.alias,
        **pool.figures().as_dict(),
        "held_longest_seconds": leaks.check(pool, leak_seconds()),
        "leaks": pool.slots.leaks,
        "named": pool.names_connections,
        "name_refused": pool.name_refused,
        "interval": interval,
        "published_at": time.time(),
    }


_role: tuple[int, str] = (0, "")


def role() -> str:
    """This process's role (``web``, ``celery``, ``other``), worked out once per process."""
    global _role
    if _role[0] != os.getpid():
        _role = (os.getpid(), process_role(os.environ, sys.argv))
    return _role[1]


def _send(pool: SizedConnectionPool, commands: Sequence[tuple[Any, ...]]) -> None:
    """Send ``commands`` on a connection of ``pool``, never waiting for one."""
    borrow(pool, time.monotonic(), lambda connection: run_commands(connection, commands))


def publish(pool: SizedConnectionPool, interval: float) -> bool:
    """Write ``pool``'s record without waiting for a connection; False if skipped."""
    ttl = max(1, round(interval * defaults.RECORD_TTL_INTERVALS))
    data = {**record(pool, interval), "ttl": ttl}
    key = record_key(pool.host, data["pid"], pool.alias)
    index = index_key(pool.alias)
    commands = [
        ("SET", key, json.dumps(data), "EX", ttl),
        ("ZADD", index, data["published_at"], key),
        # Forget processes not heard from for an hour; the index lives as long.
        ("ZREMRANGEBYSCORE", index, "-inf", data["published_at"] - defaults.INDEX_SECONDS),
        ("EXPIRE", index, defaults.INDEX_SECONDS),
    ]
    try:
        _send(pool, commands)
    except PoolTimeoutError:
        return False
    except (RedisError, OSError) as exc:
        logger.debug("connhealth: publishing pool figures failed: %s", type(exc).__name__)
        return False
    pool.restart_peak()  # only once written: a skipped round keeps its peak
    return True


def unpublish(pool: SizedConnectionPool) -> None:
    """Remove this process's record of ``pool``; the pool publishes no more after it."""
    # Wait for a publication in flight and keep the lock, so that neither that one
    # nor one set off by a later release puts the record back.
    _lock(pool).acquire(timeout=defaults.UNPUBLISH_WAIT)
    _published.discard(pool)
    key = record_key(pool.host, os.getpid(), pool.alias)
    with contextlib.suppress(RedisError, OSError):
        _send(pool, [("DEL", key), ("ZREM", index_key(pool.alias), key)])


# -- when to publish ------------------------------------------------------------

_enabled = True
_complained = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Publish nothing meanwhile: a process that only reads figures (the command)."""
    global _enabled
    enabled, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = enabled


def is_enabled() -> bool:
    """Whether this process publishes (not while :func:`paused`)."""
    return _enabled


def interval_now() -> float:
    """The publish interval, or 0 when publishing is off or misconfigured."""
    global _complained
    if not _enabled:
        return 0.0
    try:
        return conf.CONNHEALTH_PUBLISH_SECONDS
    except ImproperlyConfigured as exc:
        if not _complained:
            logger.error("connhealth: not publishing pool figures: %s", exc)
            _complained = True
        return 0.0


def leak_seconds() -> float:
    """``CONNHEALTH_LEAK_SECONDS``, or 0 (no reports) when misconfigured, which is logged
    (readiness fails for it, and the system check names it)."""
    try:
        return conf.CONNHEALTH_LEAK_SECONDS
    except ImproperlyConfigured as exc:
        logger.error("connhealth: no leak reports: %s", exc)
        return 0.0


def publish_when_due(pool: SizedConnectionPool) -> float:
    """The pools' due hook: publish ``pool`` in the background; seconds until it is due again.

    While a publication of ``pool`` is in flight it is due again at once, so
    the next release after that one ends publishes.
    """
    if not pool.publishes:
        return math.inf
    interval = interval_now()
    if not interval:
        return defaults.PUBLISH_OFF_RECHECK
    heartbeat.ensure_running(interval)  # so that the pool publishes when idle too
    lock = _lock(pool)
    if not lock.acquire(blocking=False):
        return 0.0
    publish_in_background(pool, interval, lock)
    return interval


def publish_in_background(pool: SizedConnectionPool, interval: float, lock: Lock) -> None:
    """Publish ``pool`` from a short-lived thread, so no request waits for it.

    The caller holds ``lock``, ``pool``'s publishing lock; the thread releases it.
    """
    thread = threading.Thread(
        target=_publish_and_release,
        args=(pool, interval, lock),
        name="connhealth-publish",
        daemon=True,
    )
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (interpreter shutting down)
        lock.release()


def _publish_and_release(pool: SizedConnectionPool, interval: float, lock: Lock) -> None:
    try:
        if publish(pool, interval):
            _published.add(pool)
    except Exception as exc:  # nothing may escape into the thread
        # e.g. the pool closed under the publication (a reset, a shutdown): redis-py's
        # parser then fails with AttributeError rather than a RedisError
        logger.warning("connhealth: publishing pool figures failed: %s", type(exc).__name__)
    finally:
        lock.release()


# -- this process's publishing state -------------------------------------------

_locks: weakref.WeakKeyDictionary[SizedConnectionPool, Lock]
_locks = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()
_published: weakref.WeakSet[SizedConnectionPool] = weakref.WeakSet()


def _lock(pool: SizedConnectionPool) -> Lock:
    """The lock a publication of ``pool`` holds from its start to its end."""
    with _locks_lock:
        lock = _locks.get(pool)
        if lock is None:
            lock = _locks[pool] = threading.Lock()
        return lock


def in_flight(pool: SizedConnectionPool) -> bool:
    """Whether a publication of ``pool`` is under way (or its record was removed for good)."""
    return _lock(pool).locked()


def forget() -> None:
    """Forget publications under way and done: a forked child has neither.

    Nothing is acquired here: a lock that a parent's thread held at the fork
    would never be released in the child, so every lock is made anew.
    """
    global _locks, _locks_lock, _published, _complained
    _locks = weakref.WeakKeyDictionary()
    _locks_lock = threading.Lock()
    _published = weakref.WeakSet()
    _complained = False


def unpublish_all() -> None:
    """Remove this process's records when it exits cleanly (a killed one's expire)."""
    for pool in list(_published):
        if pool.pid == os.getpid():
            unpublish(pool)
