"""What publishing pool figures costs a request: ``cache.get`` with it on and off.

    python bench/publish_overhead.py [--rounds 7] [--gets 20000] [--chunk 1000]

Starts its own ``redis-server`` on a free loopback port (stopped on exit, Ctrl-C
included), configures Django with one alias through ``sized_caches``, and in
one process, one thread, through that one ``SizedConnectionPool``, measures:

- ``cache.get`` throughput with ``CONNHEALTH_PUBLISH_SECONDS`` = 1 (on) and 0 (off),
  and the process's CPU time per call (every thread: publishing threads included);
- ``get_connection()`` + ``release()`` alone, no command: the hot path where
  publishing is set off, without network noise.

Each round runs ``--gets`` calls per mode, in chunks of ``--chunk`` alternating
on/off (ABBA), so that both modes sample the same seconds of a shared machine's
load. Each mode keeps its own publishing schedule across chunks (on: a publish
every second of wall time, so on-chunks, half the time, carry about two
publishes per second of their own: an overestimate of the cost), and a chunk's
time includes waiting for the publish it set off. The verdict uses the median of
the rounds' on/off ratios; the target is at most 3 % slower. Prints Markdown;
exit status 1 when over the target, 2 when the run is invalid.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The target: publishing on costs ``cache.get`` at most this fraction of its throughput.
TARGET = 0.03
PUBLISH_SECONDS = 1.0
MODES = {"off": 0.0, "on": PUBLISH_SECONDS}
#: get_connection() + release() pairs per chunk (no I/O: fast).
CHECKOUTS_PER_CHUNK = 2_000


def configure(url: str) -> Any:
    """Django with one sized alias at ``url``; returns that alias's pool."""
    import django
    from django.conf import settings

    from django_connhealth import sized_caches

    settings.configure(
        CACHES=sized_caches(
            {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
            environ={"CONNHEALTH_WORKERS": "1", "CONNHEALTH_THREADS": "1"},
        ),
        CONNHEALTH_PUBLISH_SECONDS=0,
        INSTALLED_APPS=["django_connhealth"],
        USE_TZ=True,
    )
    django.setup()
    from django.core.cache import cache

    cache.set("bench:k", "v" * 100)
    return cache.client.get_client().connection_pool  # type: ignore[attr-defined]


class Switch:
    """Turns publishing on and off, each mode with its own schedule.

    Through override_settings, whose setting_changed signal clears the app's
    cached settings. The pool's next due time is saved when a mode is left
    and restored when it is entered again: off does not push on's schedule back
    (off looks at the setting every few seconds), and on publishes every second.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.due = dict.fromkeys(MODES, 0.0)
        self.override: Any = None
        self.mode: str | None = None

    def enter(self, mode: str) -> None:
        from django.test import override_settings

        if self.mode is not None:
            self.due[self.mode] = self.pool.slots.due_at
            self.override.disable()
        self.override = override_settings(CONNHEALTH_PUBLISH_SECONDS=MODES[mode])
        self.override.enable()
        self.pool.slots.due_at = self.due[mode]
        self.mode = mode

    def close(self) -> None:
        if self.override is not None:
            self.override.disable()


def join_publishers() -> None:
    for thread in threading.enumerate():
        if thread.name == "connhealth-publish":
            thread.join(10)


def get_chunk(count: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``count`` ``cache.get`` calls and the publish they set off."""
    from django.core.cache import cache

    get = cache.get
    cpu = time.process_time()
    started = time.perf_counter()
    for _ in range(count):
        get("bench:k")
    join_publishers()
    return time.perf_counter() - started, time.process_time() - cpu


def checkout_chunk(pool: Any, count: int) -> float:
    """Seconds for ``count`` get_connection() + release() of an open connection."""
    from redis.connection import BlockingConnectionPool

    needs_name = (
        inspect.signature(BlockingConnectionPool.get_connection).parameters["command_name"].default
        is inspect.Parameter.empty
    )  # redis-py 5.0 requires a command name; later versions warn when given one
    get_connection = (lambda: pool.get_connection("GET")) if needs_name else pool.get_connection
    release = pool.release
    started = time.perf_counter()
    for _ in range(count):
        release(get_connection())
    join_publishers()
    return time.perf_counter() - started


@dataclass
class Tally:
    """One mode's totals in one round."""

    gets: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    checkouts: int = 0
    checkout_wall: float = 0.0

    @property
    def rate(self) -> float:
        return self.gets / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.gets * 1e6

    @property
    def checkout_us(self) -> float:
        return self.checkout_wall / self.checkouts * 1e6


@dataclass
class Results:
    rounds: dict[str, list[Tally]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    publishes: int = 0


def run(pool: Any, client: Any, rounds: int, gets: int, chunk: int) -> Results:
    switch = Switch(pool)
    results = Results()
    try:
        for mode in MODES:  # warm up both paths
            switch.enter(mode)
            get_chunk(chunk)
            checkout_chunk(pool, CHECKOUTS_PER_CHUNK)
        before = set_calls(client)
        for _ in range(rounds):
            tallies = {mode: Tally() for mode in MODES}
            for number in range(max(1, gets // chunk)):
                order = ("on", "off") if number % 2 == 0 else ("off", "on")
                for mode in order:
                    switch.enter(mode)
                    wall, cpu = get_chunk(chunk)
                    tally = tallies[mode]
                    tally.gets += chunk
                    tally.wall += wall
                    tally.cpu += cpu
                    tally.checkout_wall += checkout_chunk(pool, CHECKOUTS_PER_CHUNK)
                    tally.checkouts += CHECKOUTS_PER_CHUNK
            for mode, tally in tallies.items():
                results.rounds[mode].append(tally)
        results.publishes = set_calls(client) - before
    finally:
        switch.close()
    return results


def set_calls(client: Any) -> int:
    return int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))


def versions() -> list[str]:
    import django
    import django_redis
    import redis

    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    server_version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    return [
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- redis-py {redis.__version__}, Django {django.get_version()}, "
        f"django-redis {'.'.join(map(str, django_redis.VERSION))}, redis-server {server_version}",
    ]


def report(results: Results, args: argparse.Namespace, seconds: float) -> int:
    on, off = results.rounds["on"], results.rounds["off"]
    ratios = [a.rate / b.rate for a, b in zip(on, off, strict=True)]
    ratio = statistics.median(ratios)
    slower = 1 - ratio

    def median(tallies: list[Tally], attr: str) -> float:
        return statistics.median(float(getattr(tally, attr)) for tally in tallies)

    print("# Publishing overhead: one process, one thread, one sized pool\n")
    print("\n".join(versions()))
    print(
        f"- {args.rounds} rounds of {args.gets:,} `cache.get` (100-byte value) per mode, "
        f"in chunks of {args.chunk:,} alternating on/off; {seconds:.0f} s in all\n"
    )
    print(
        "| publishing | `cache.get`/s (median of rounds) | min | max "
        "| CPU µs per get | checkout+release µs |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode, label in (("off", "off (0)"), ("on", f"on ({PUBLISH_SECONDS:g} s)")):
        tallies = results.rounds[mode]
        rates = [tally.rate for tally in tallies]
        print(
            f"| {label} | {median(tallies, 'rate'):,.0f} | {min(rates):,.0f} | {max(rates):,.0f} "
            f"| {median(tallies, 'cpu_us'):.2f} | {median(tallies, 'checkout_us'):.3f} |"
        )
    verdict = "within" if slower <= TARGET else "OVER"
    print(
        f"\nOn/off `cache.get` throughput, median of the rounds' ratios: **{ratio:.4f}** "
        f"({slower * 100:+.2f} % slower with publishing on; target at most "
        f"{TARGET * 100:g} %: {verdict}). Rounds: {', '.join(f'{r:.3f}' for r in ratios)}."
    )
    print(f"Publishes during the measured rounds: {results.publishes}.")
    if not results.publishes:
        print("\nInvalid run: nothing was published with publishing on.")
        return 2
    return 0 if slower <= TARGET else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--gets", type=int, default=20_000, help="cache.get calls per round and mode"
    )
    parser.add_argument("--chunk", type=int, default=1_000, help="calls before switching modes")
    args = parser.parse_args()

    from tests.redis_server import RedisServer

    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="publish-bench-") as workdir,
        RedisServer(Path(workdir)) as server,
        server.client() as client,
    ):
        pool = configure(server.url)
        results = run(pool, client, args.rounds, args.gets, args.chunk)
        stats = pool.figures()
    code = report(results, args, time.monotonic() - started)
    print(
        f"Pool after the run: max_connections {stats.max_connections}, created {stats.created}, "
        f"waits {stats.waits}, timeouts {stats.timeouts}."
    )
    return code


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
