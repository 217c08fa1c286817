"""ConnectionFactory: one pool per URL per process, even when threads race for it."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import cache as default_cache
from django.core.cache import caches
from django.test import override_settings

from django_connhealth import sized_caches
from django_connhealth.factory import ConnectionFactory, SentinelConnectionFactory
from django_connhealth.pool import SizedConnectionPool
from tests.helpers import SLOW, redis_caches

if TYPE_CHECKING:
    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

#: ``django.core.cache.cache`` (a per-thread proxy), typed loosely: django-redis adds ``client``.
cache: Any = default_cache
THREADS = 16
REPETITIONS = 10


def named_ours(server: RedisServer, host: str) -> list[dict[str, str]]:
    return [
        entry
        for entry in server.client_list()
        if entry.get("name", "").startswith(f"connhealth:{host}:")
    ]


def race_for_pool(count: int) -> list[Any]:
    """``count`` threads released at once each do a get on their own Django cache object."""
    barrier = threading.Barrier(count)
    lock = threading.Lock()
    backends: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=SLOW)
            backend = caches["default"]  # per thread: a new cache object
            assert backend.get("missing") is None
            with lock:
                backends.append(backend)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SLOW)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len({id(backend) for backend in backends}) == count
    return backends


def test_racing_threads_build_one_pool_per_url(
    redis_db: RedisDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 threads, each with its own Django cache object, hit a fresh URL at once.

    Repeated on 10 fresh URLs: every time exactly one pool is built and all 16
    cache objects use it.
    """
    built: list[str] = []
    build = ConnectionFactory.get_connection_pool

    def slow_build(self: ConnectionFactory, params: dict[str, Any]) -> Any:
        built.append(params["url"])
        time.sleep(0.02)  # widen the window in which an unlocked factory builds twice
        return build(self, params)

    monkeypatch.setattr(ConnectionFactory, "get_connection_pool", slow_build)
    host = f"t{uuid.uuid4().hex[:10]}"
    urls = [redis_db.server.url_for(db) for db in range(1, REPETITIONS + 1)]  # read-only use
    pools: dict[str, Any] = {}

    for url in urls:
        with override_settings(CACHES=redis_caches(url, environ={"CONNHEALTH_HOST": host})):
            backends = race_for_pool(THREADS)
            seen = {id(backend.client.get_client().connection_pool) for backend in backends}
            assert len(seen) == 1
            pool = backends[0].client.get_client().connection_pool
            assert isinstance(pool, SizedConnectionPool)
            assert ConnectionFactory.pools.as_dict()[url] is pool
            assert built.count(url) == 1
            pools[url] = pool

    assert built == urls
    assert len({id(pool) for pool in pools.values()}) == REPETITIONS
    assert {url: ConnectionFactory.pools.as_dict()[url] for url in urls} == pools


def test_disconnect_all_closes_every_connection(redis_db: RedisDB) -> None:
    host = f"t{uuid.uuid4().hex[:10]}"
    server = redis_db.server
    backend = "django_redis.cache.RedisCache"
    caches_config = sized_caches(
        {
            "default": {"BACKEND": backend, "LOCATION": redis_db.url},
            "other": {"BACKEND": backend, "LOCATION": server.url_for(0)},
        },
        environ={"CONNHEALTH_HOST": host},
    )
    with override_settings(CACHES=caches_config):
        cache.set("k", "v")
        assert caches["other"].get("missing") is None
        pools: list[Any] = list(ConnectionFactory.pools.as_dict().values())
        assert len(pools) == 2
        assert all(isinstance(pool, SizedConnectionPool) for pool in pools)
        names = sorted(entry["name"] for entry in named_ours(server, host))
        assert len(names) == 2
        assert {name.rsplit(":", 1)[1] for name in names} == {"default", "other"}

        ConnectionFactory.disconnect_all()

        assert ConnectionFactory.pools.as_dict() == {}
        deadline = time.monotonic() + SLOW
        while named_ours(server, host):
            assert time.monotonic() < deadline, named_ours(server, host)
            time.sleep(0.01)
        for pool in pools:
            assert all(not connection._sock for connection in pool._connections)


def sentinel_options(sentinels: list[tuple[str, int]], url: str) -> tuple[dict[str, Any], str]:
    config = sized_caches(
        {
            "x": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": url,
                "OPTIONS": {"SENTINELS": sentinels},
            }
        },
        environ={},
    )["x"]
    return config["OPTIONS"], url


def test_one_service_name_on_two_sets_of_sentinels_is_two_pools() -> None:
    """``mymaster`` is every tutorial's name: the sentinels tell two services apart."""
    first = SentinelConnectionFactory(sentinel_options([("10.0.0.1", 26379)], URL)[0])
    second = SentinelConnectionFactory(sentinel_options([("10.0.0.2", 26379)], URL)[0])
    same = SentinelConnectionFactory(sentinel_options([("10.0.0.1", 26379)], URL)[0])
    pools = [factory.connect(URL).connection_pool for factory in (first, second, same)]
    assert pools[0] is not pools[1]
    assert pools[0] is pools[2]


@pytest.mark.parametrize(
    ("query", "is_master"), [("", True), ("?is_master=", True), ("?is_master=0", False)]
)
def test_the_role_is_read_out_of_the_url(query: str, is_master: bool) -> None:
    options, url = sentinel_options([("10.0.0.3", 26379)], URL + query)
    pool = SentinelConnectionFactory(options).connect(url).connection_pool
    assert pool.is_master is is_master  # type: ignore[attr-defined]
    assert "is_master" not in str(pool.connection_kwargs.get("db", ""))


URL = "redis://mymaster/0"
