"""Benchmark 2, in one process: cache.set + cache.get through three clients.

- ``sized``: a django-redis alias through ``sized_caches`` (this app's
  ``SizedConnectionPool``: counters on, publishing every second).
- ``default``: a django-redis alias with its default pool.
- ``blocking``: a django-redis alias with redis-py's own ``BlockingConnectionPool``
  of the same size as the sized pool (what the sized pool builds on, without
  this app's counting, naming and publishing): tells the two costs apart.
- ``timeouts``: django-redis's default pool with the socket and connect timeouts
  and ``health_check_interval`` that ``sized_caches`` fills in (a socket with a
  timeout costs CPython a ``poll()`` before every read and write): tells the cost
  of those settings apart from the pool's.
- ``redis-py``: a raw ``redis.Redis`` (its default pool, no serialization).

Each alias uses its own db on the same server. Rounds are interleaved: each round
runs every configuration once, in rotating order, for ``--seconds``. With
``--threads N`` the N threads share the client (and its pool).

Prints one JSON object. ``--spin CONFIG`` instead runs one configuration for
``--seconds`` and prints its rate: bench/run.py profiles that with py-spy.

Run by bench/run.py with the bench virtualenv's Python.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from collections.abc import Callable

CONFIGS = ("sized", "default", "blocking", "timeouts", "redis-py")
#: The connection settings ``sized_caches`` fills in that any redis-py pool accepts.
TIMEOUT_KWARGS = ("socket_timeout", "socket_connect_timeout", "health_check_interval")
BATCH = 50
PUBLISH_SECONDS = 1


def setup(url: str, threads: int) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    import django
    import redis
    from django.conf import settings

    from django_connhealth import sized_caches

    caches = sized_caches(
        {"sized": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"{url}/0"}},
        environ={"CONNHEALTH_WORKERS": "1", "CONNHEALTH_THREADS": str(threads)},
    )
    caches["default"] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"{url}/1"}
    caches["blocking"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"{url}/3",
        "OPTIONS": {
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {
                "max_connections": caches["sized"]["OPTIONS"]["CONNECTION_POOL_KWARGS"][
                    "max_connections"
                ],
                "timeout": 2.0,
            },
        },
    }
    sized_kwargs = caches["sized"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]
    caches["timeouts"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"{url}/4",
        "OPTIONS": {
            "CONNECTION_POOL_KWARGS": {
                k: sized_kwargs[k] for k in TIMEOUT_KWARGS if k in sized_kwargs
            }
        },
    }
    settings.configure(
        CACHES=caches,
        CONNHEALTH_PUBLISH_SECONDS=PUBLISH_SECONDS,
        INSTALLED_APPS=["django_connhealth"],
        USE_TZ=True,
    )
    django.setup()
    from django.core.cache import caches as django_caches

    raw = redis.Redis.from_url(f"{url}/2")

    def raw_set(key: str, value: int) -> Any:
        return raw.set(key, value, ex=300)  # django-redis sets with the default timeout, 300 s

    return {
        "sized": (django_caches["sized"].set, django_caches["sized"].get),
        "default": (django_caches["default"].set, django_caches["default"].get),
        "blocking": (django_caches["blocking"].set, django_caches["blocking"].get),
        "timeouts": (django_caches["timeouts"].set, django_caches["timeouts"].get),
        "redis-py": (raw_set, raw.get),
    }


def loop(
    set_: Callable[..., Any], get: Callable[..., Any], key: str, deadline: float, counts: list[int]
) -> None:
    done = 0
    value = 0
    while True:
        for _ in range(BATCH):
            value += 1
            set_(key, value)
            get(key)
        done += 2 * BATCH
        if time.perf_counter() >= deadline:
            break
    counts.append(done)


def measure(
    ops: tuple[Callable[..., Any], Callable[..., Any]], seconds: float, threads: int
) -> float:
    """Operations (a set or a get each) per second, all threads together."""
    counts: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    if threads == 1:  # in this thread, so that an in-process profiler sees it
        loop(*ops, "bench:k0", deadline, counts)
        return counts[0] / (time.perf_counter() - started)
    workers = [
        threading.Thread(target=loop, args=(*ops, f"bench:k{n}", deadline, counts))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def pools() -> dict[str, Any]:
    """The redis-py pool behind each django-redis alias."""
    from django.core.cache import caches

    return {
        config: caches[config].client.get_client().connection_pool  # type: ignore[attr-defined]
        for config in ("sized", "default", "blocking", "timeouts")
    }


def checkout(pool: Any, seconds: float) -> float:
    """Microseconds per ``get_connection()`` + ``release()`` of an open connection: no command."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            pool.release(pool.get_connection())
        done += 200
        if time.perf_counter() >= deadline:
            break
    return (time.perf_counter() - started) / done * 1e6


def published(url: str) -> dict[str, Any]:
    """What the sized pool published about itself (proof that publishing was on)."""
    import redis

    from django_connhealth.pool import live_pools
    from django_connhealth.publish import index_key

    client = redis.Redis.from_url(f"{url}/0")
    try:
        keys = client.zrange(index_key("sized"), 0, -1)
        records = [json.loads(v) for v in client.mget(keys) if v] if keys else []
    finally:
        client.close()
    pools = live_pools()
    return {
        "records": len(records),
        "record": records[0] if records else None,
        "pool_class": type(pools[0]).__name__ if pools else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="redis://127.0.0.1:PORT (no db: dbs 0-4 are used)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spin", choices=CONFIGS)
    parser.add_argument(
        "--profile", action="store_true", help="pyinstrument: the loop and pool checkout"
    )
    args = parser.parse_args()
    clients = setup(args.url, args.threads)
    for config in CONFIGS:  # warm up: connections open, code paths hot
        measure(clients[config], 0.3, args.threads)

    if args.spin:
        rate = measure(clients[args.spin], args.seconds, args.threads)
        print(json.dumps({"config": args.spin, "threads": args.threads, "ops": rate}))
        return 0
    if args.profile:
        return profile(clients)

    results: dict[str, list[float]] = {config: [] for config in CONFIGS}
    for round_no in range(args.rounds):
        shift = round_no % len(CONFIGS)
        for config in (*CONFIGS[shift:], *CONFIGS[:shift]):
            results[config].append(measure(clients[config], args.seconds, args.threads))
    # Pool checkout + release alone (no command), interleaved the same way.
    checkouts: dict[str, list[float]] = {config: [] for config in pools()}
    for round_no in range(args.rounds):
        names = list(checkouts)
        shift = round_no % len(names)
        for config in (*names[shift:], *names[:shift]):
            checkouts[config].append(checkout(pools()[config], args.seconds / 2))
    time.sleep(PUBLISH_SECONDS * 0.5)  # let a publishing thread that is under way finish
    print(
        json.dumps(
            {
                "threads": args.threads,
                "results": results,
                "checkout_us": checkouts,
                **published(args.url),
            }
        )
    )
    return 0


POOL_FRAMES = ("Pool.", "Queue.", "django_connhealth", "Condition.")


def profile(clients: dict[str, tuple[Callable[..., Any], Callable[..., Any]]]) -> int:
    """pyinstrument, one thread: where the loop's time goes, and what pool checkout costs.

    For each run: the top frames by self time, then the total (inclusive) time of the
    pool's own frames (get_connection, release, their queue), comparable across pools.
    """
    from pyinstrument import Profiler

    def flat(profiler: Profiler, mode: str) -> list[str]:
        text = profiler.output_text(
            flat=True, flat_time=mode, show_all=True, unicode=False, color=False
        )
        return [line for line in text.splitlines() if re.match(r"^\d+\.\d+ ", line)]

    def show(title: str, profiler: Profiler, top: int) -> None:
        print(f"=== {title}")
        if top:
            print("top frames by self time (s):")
            print("\n".join(f"  {line}" for line in flat(profiler, "self")[:top]))
        print("pool frames, total time including callees (s):")
        pool_lines = [ln for ln in flat(profiler, "total") if any(f in ln for f in POOL_FRAMES)]
        print("\n".join(f"  {line}" for line in pool_lines[:10]))

    for config in ("sized", "default"):
        profiler = Profiler(interval=0.0005)
        with profiler:
            rate = measure(clients[config], 4.0, 1)
        show(f"{config}: cache.set + cache.get loop, 4 s, {rate:,.0f} ops/s profiled", profiler, 12)
    for config, pool in pools().items():
        profiler = Profiler(interval=0.0005)
        with profiler:
            us = checkout(pool, 2.0)
        show(
            f"{config}: get_connection() + release() only, 2 s, {us:.2f} us/pair profiled",
            profiler,
            0,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
