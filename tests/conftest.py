"""Shared pytest fixtures.

Redis fixtures start REAL ``redis-server`` processes (see ``tests/redis_server.py``)
on free loopback ports; they never touch a shared Redis.  Add new fixtures in
their own section below.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from tests.redis_server import RedisServer, SentinelSet, SilentListener

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# --------------------------------------------------------------------- Redis

#: Databases handed out by ``redis_db`` (db 0 is left alone).
_REDIS_DBS = itertools.cycle(range(1, 16))


@dataclass(frozen=True)
class RedisDB:
    """One logical database on the session Redis server."""

    server: RedisServer
    db: int
    url: str


class StartRedis(Protocol):
    """Type of the ``start_redis`` fixture."""

    def __call__(
        self, password: str | None = None, extra_args: Sequence[str] = ()
    ) -> RedisServer: ...


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (do not kill/pause it)."""
    with RedisServer(tmp_path_factory.mktemp("redis-session")) as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisDB]:
    """A db number (1..15, cycling) on the session server, flushed before and after."""
    db = next(_REDIS_DBS)
    with redis_server.client(db) as client:
        client.flushdb()
    try:
        yield RedisDB(server=redis_server, db=db, url=redis_server.url_for(db))
    finally:
        with redis_server.client(db) as client:
            client.flushdb()


@pytest.fixture
def fresh_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A brand-new redis-server for tests that kill/pause/restart it."""
    with RedisServer(tmp_path_factory.mktemp("redis-fresh")) as server:
        yield server


@pytest.fixture
def start_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRedis]:
    """Factory ``start_redis(password=None, extra_args=()) -> RedisServer``.

    Every server it started is stopped at teardown.
    """
    with contextlib.ExitStack() as stack:

        def _start(password: str | None = None, extra_args: Sequence[str] = ()) -> RedisServer:
            workdir = tmp_path_factory.mktemp("redis-extra")
            server = RedisServer(workdir, password=password, extra_args=extra_args)
            return stack.enter_context(server)

        yield _start


@pytest.fixture
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A real Sentinel set of its own: one master, one replica, three sentinels (quorum 2)."""
    with SentinelSet(tmp_path_factory.mktemp("sentinel")) as servers:
        yield servers


# ----------------------------------------------------------- silent listener


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    """A loopback TCP listener that accepts connections and never answers."""
    with SilentListener() as listener:
        yield listener


# ------------------------------------------------------------ Django caches


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    """Close every pool a test opened, so no socket outlives its test.

    Both factories keep pools per URL for the life of the process; tests use
    fresh servers and databases, so each test starts and ends with none.
    """
    yield
    from django.core.cache import caches
    from django_redis.pool import ConnectionFactory as DjangoRedisConnectionFactory

    from django_connhealth.process import reset_process_state

    caches.close_all()
    reset_process_state()
    # django-redis's own pools, of tests that use its factory (unsized aliases)
    plain_pools: dict[str, Any] = DjangoRedisConnectionFactory._pools  # type: ignore[misc]
    for pool in plain_pools.values():
        pool.disconnect()
    plain_pools.clear()


# ------------------------------------------------------------------- probes


@pytest.fixture
def isolated_probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CONNHEALTH_* setting from outside; no probe state or check thread outlives the test.

    Modules of tests that answer health probes use it with ``pytestmark``.
    """
    from django_connhealth.conf import SETTING_NAMES
    from django_connhealth.process import reset_process_state

    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    reset_process_state()
    threads = set(threading.enumerate())
    yield
    # Stops the check threads first (a check stuck on a dead socket ends with its
    # socket timeout), so none of them opens a connection after the pools close.
    reset_process_state()
    assert set(threading.enumerate()) <= threads
