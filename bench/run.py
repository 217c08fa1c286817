"""``make bench``: the benchmarks of issues 5 and 11, written to bench/RESULTS.md.

Run with the bench virtualenv's Python (bench/bootstrap.py sets it up and execs
this). Every figure is a median over interleaved rounds: each round runs every
configuration once, in an order that rotates from round to round, and every
ratio is the median of the per-round ratios (both sides measured in the same
round). Where a target is missed, the runner profiles the code path concerned
(py-spy on the gunicorn workers, pyinstrument in-process) and writes the top
frames into RESULTS.md.

Environment (all optional): ``BENCH_ROUNDS`` (rounds of every benchmark; by
default 7 for probes, 50 for the pool, 7 for load, 3 for the command),
``BENCH_PROBE_SECONDS`` (2), ``BENCH_LOAD_SECONDS`` (3), ``BENCH_ONLY`` (e.g.
``1,3``: run only these, 5 being bench/publish_overhead.py and 6 the faults; their
sections then replace their old text in the results file, the others are kept),
``BENCH_RESULTS`` (output path).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BALANCE_CHECK_AFTER,
    BALANCE_TRIES,
    BENCH,
    CHILDREN,
    ROOT,
    VENV_BIN,
    WORK,
    ClientsMonitor,
    Gunicorn,
    Rounds,
    base_env,
    load_generator,
    median,
    pyspy_record,
    rotated,
    run_load,
    start_load,
    summarize_collapsed,
    table,
    verdict,
)
from testproject.stopper import Stopped, Stopper
from testproject.supervisor import HOST, free_port
from testproject.traffic import get as http_get


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


ROUNDS = int(env_number("BENCH_ROUNDS", 0))
PROBE_ROUNDS = ROUNDS or 7
POOL_ROUNDS = ROUNDS or 50
POOL_SLICE = 0.08
LOAD_ROUNDS = ROUNDS or 7
COMMAND_ROUNDS = ROUNDS or 3
PROBE_SECONDS = int(env_number("BENCH_PROBE_SECONDS", 2))
LOAD_SECONDS = int(env_number("BENCH_LOAD_SECONDS", 3))
EVERY = ("1", "2", "3", "4", "5", "6")
ONLY = {part.strip() for part in os.environ.get("BENCH_ONLY", ",".join(EVERY)).split(",") if part}
RESULTS = Path(os.environ.get("BENCH_RESULTS", "") or BENCH / "RESULTS.md")
PY = sys.executable


class Section:
    """One benchmark's part of RESULTS.md."""

    def __init__(self, number: str, title: str) -> None:
        self.number = number
        self.title = title
        self.method: list[str] = []
        self.tables: list[str] = []
        self.targets: list[tuple[str, str, bool]] = []
        self.notes: list[str] = []
        self.profiles: list[tuple[str, str]] = []

    def target(self, text: str, measured: str, ok: bool) -> None:
        self.targets.append((text, measured, ok))

    def render(self) -> str:
        out = [f"## {self.number}. {self.title}", ""]
        out += [*self.method, ""] if self.method else []
        for block in self.tables:
            out += [block, ""]
        if self.targets:
            out += [
                table(
                    ["target", "measured", "result"],
                    [(t, m, verdict(ok)) for t, m, ok in self.targets],
                ),
                "",
            ]
        out += [*self.notes, ""] if self.notes else []
        for title, text in self.profiles:
            out += [f"**Profile: {title}**", "", "```", text.rstrip(), "```", ""]
        return "\n".join(out)


def say(text: str = "") -> None:
    print(text, flush=True)


def loadgen() -> str:
    if load_generator() == "wrk":
        return "wrk (2 threads)"
    return (
        "**the Python fallback load generator** (bench/pyload.py: wrk could not be installed; "
        "it is slower and shares the CPUs, so these figures are not comparable with wrk's)"
    )


def steps(rounds: int, items: list[Any]) -> list[tuple[int, Any]]:
    """(round, configuration) in run order: every round has every item, order rotating."""
    stride = max(1, len(items) // max(1, rounds))
    return [(r, item) for r in range(rounds) for item in rotated(items, r * stride)]


# -- 1. probes --------------------------------------------------------------------------

ENDPOINTS = {
    "/ok (floor)": "/ok",
    "health/live": "/health/live",
    "health/ready": "/health/ready",
    "health-check Cache": "/hc/cache/?format=json",
    "health-check Redis": "/hc/redis/?format=json",
    "watchman caches": "/watchman/?check=watchman.checks.caches",
}
OURS = ("health/live", "health/ready")
HC = ("health-check Cache", "health-check Redis")


def bench_probes() -> Section:
    section = Section("1", "Probes: health endpoints vs the floor and the peers")
    section.method = [
        f"testproject (settings `bench.peer_settings`) under gunicorn, 2 workers x 4 threads, "
        f"gthread, `--preload`; {loadgen()} at 8 and 32 keep-alive "
        f"connections, {PROBE_SECONDS} s per run, {PROBE_ROUNDS} interleaved rounds; one "
        f"redis-server on loopback for all endpoints. django-health-check "
        f"{version('django-health-check')}: one endpoint per check (`Cache` on the `default` "
        f"alias; `Redis` with a `client_factory` on the same URL), `?format=json`. django-watchman "
        f"{version('django-watchman')}: `WATCHMAN_CHECKS` = caches only. Errors = non-2xx/3xx "
        f"responses + socket errors, summed over all rounds. `x /ok` and `ready / this` are "
        f"medians of per-round ratios of requests/s. Both workers accept from one socket "
        f"and a keep-alive connection stays with the worker that accepted it, so now and then "
        f"one worker takes nearly all of a run's connections and the run measures half the "
        f"server, whatever the endpoint: a run in which a worker holds less than half its "
        f"share {BALANCE_CHECK_AFTER:g} s in is restarted (up to {BALANCE_TRIES} tries).",
    ]
    redis = CHILDREN.redis(WORK / "redis-probes")
    server = Gunicorn(
        "probes", settings="bench.peer_settings", redis_url=redis.url, workers=2, threads=4
    )
    rounds = Rounds()
    with server:
        for path in ENDPOINTS.values():
            status, body = http_get(server.base + path)
            if status != 200:
                section.notes.append(f"- `{path}` answered {status} before the run: {body[:200]!r}")
            run_load(server.base + path, 8, 1)  # warm-up
        configs = [(name, conns) for conns in (8, 32) for name in ENDPOINTS]
        restarts = 0
        for number, (round_no, (name, conns)) in enumerate(steps(PROBE_ROUNDS, configs), 1):
            result = run_load(
                server.base + ENDPOINTS[name], conns, PROBE_SECONDS, balanced=server.balanced
            )
            restarts += int(result["restarts"])
            rounds.add((name, conns), result)
            say(
                f"  [1] round {round_no + 1} ({number}/{len(configs) * PROBE_ROUNDS}) {name:<20} "
                f"c={conns:<3} {result['rps']:>8.0f} req/s  p99 {result['p99_ms']:.2f} ms  "
                f"errors {result['errors']}"
            )
        section.notes.append(
            f"- Runs restarted because one worker held too many of their connections: {restarts}."
        )
        rows = []
        for conns in (8, 32):
            for name, path in ENDPOINTS.items():
                key = (name, conns)
                rows.append(
                    (
                        name,
                        f"`{path}`",
                        conns,
                        rounds.median(key, "rps"),
                        rounds.median(key, "p50_ms"),
                        rounds.median(key, "p99_ms"),
                        int(rounds.total(key, "errors")),
                        rounds.ratio(key, ("/ok (floor)", conns), "rps"),
                        rounds.ratio(("health/ready", conns), key, "rps"),
                    )
                )
        section.tables.append(
            table(
                [
                    "endpoint",
                    "path",
                    "conns",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "x /ok",
                    "ready / this",
                ],
                rows,
            )
        )
        missed = False
        for conns in (8, 32):
            ratio = rounds.ratio(("health/ready", conns), ("/ok (floor)", conns), "rps")
            section.target(
                f"health/ready >= 0.8x /ok, {conns} conns", f"{ratio:.2f}x", ratio >= 0.8
            )
            missed |= ratio < 0.8
        for conns in (8, 32):
            # Against the faster of django-health-check's endpoints, round by round.
            best = [
                max(a["rps"], b["rps"])
                for a, b in zip(
                    rounds.data[(HC[0], conns)], rounds.data[(HC[1], conns)], strict=True
                )
            ]

            def over_best(name: str, best: list[float] = best, conns: int = conns) -> float:
                runs = rounds.data[(name, conns)]
                return median(r["rps"] / b for r, b in zip(runs, best, strict=True) if b)

            ratio = over_best("health/ready")
            section.target(
                f"health/ready >= 10x django-health-check (its faster endpoint), {conns} conns",
                f"{ratio:.1f}x (the /ok floor: {over_best('/ok (floor)'):.1f}x)",
                ratio >= 10,
            )
            missed |= ratio < 10
        floor_p99 = rounds.median(("/ok (floor)", 8), "p99_ms")
        for name in OURS:
            p99 = rounds.median((name, 8), "p99_ms")
            section.target(
                f"{name} p99 < 5 ms at 8 conns",
                f"{p99:.2f} ms (the /ok floor: {floor_p99:.2f} ms)",
                p99 < 5,
            )
            missed |= p99 >= 5
        for name in OURS:
            errors = int(rounds.total((name, 8), "errors") + rounds.total((name, 32), "errors"))
            section.target(f"{name}: no errors", str(errors), errors == 0)
            missed |= errors > 0
        if missed:
            say("  [1] a target was missed: profiling health/ready under load with py-spy")
            section.profiles.append(
                (
                    "py-spy on the gunicorn workers while wrk drives `/health/ready` "
                    "(8 conns, 5 s); samples of the thread holding the GIL",
                    profile_server(server, "/health/ready", 8, "probes-ready"),
                )
            )
    CHILDREN.stop_redis(redis)
    return section


LISTENER_ROUNDS = ROUNDS or 3
#: Requests that keep every request thread busy: 2 per thread, each holding one 0.2 s.
SATURATE_PATH = "/hold?seconds=0.2"
SATURATE_CONNECTIONS = 16


def bench_listener() -> Section:
    """The probe listener beside the app's own port, with the app idle and saturated."""
    section = Section("1b", "Probes through the probe listener, the app idle and saturated")
    section.method = [
        f"testproject (settings `bench.peer_settings`) under gunicorn, 2 workers x 4 threads, "
        f"gthread, `--preload`, with `CONNHEALTH_PROBE_PORT` set (`serve_probes()` in its "
        f"wsgi.py); {loadgen()} at 8 and 32 keep-alive connections, {PROBE_SECONDS} s per run, "
        f"{LISTENER_ROUNDS} interleaved rounds. *Saturated*: a second load of "
        f"{SATURATE_CONNECTIONS} connections on `{SATURATE_PATH}` (each request keeps a "
        f"pooled connection 0.2 s) holds every request thread busy and queues as many "
        f"requests again, for the whole run. `x /ok idle` is the median of per-round ratios "
        f"of requests/s to the trivial view on the app's port with the app idle.",
    ]
    redis = CHILDREN.redis(WORK / "redis-listener")
    probe_port = free_port()
    server = Gunicorn(
        "listener",
        settings="bench.peer_settings",
        redis_url=redis.url,
        workers=2,
        threads=4,
        CONNHEALTH_PROBE_PORT=str(probe_port),
        CONNHEALTH_PROBE_HOST=HOST,
    )
    listener = f"http://{HOST}:{probe_port}"
    endpoints = {
        "/ok (app port)": server.base + "/ok",
        "health/live (app port)": server.base + "/health/live",
        "listener /live": listener + "/live",
        "listener /ready": listener + "/ready",
    }
    rounds = Rounds()
    with server:
        for url in endpoints.values():
            run_load(url, 8, 1)  # warm-up
        configs = [
            (state, name, conns)
            for state in ("idle", "saturated")
            for conns in (8, 32)
            for name in endpoints
        ]
        for number, (round_no, (state, name, conns)) in enumerate(
            steps(LISTENER_ROUNDS, configs), 1
        ):
            saturating = None
            if state == "saturated":
                saturating = start_load(
                    server.base + SATURATE_PATH, SATURATE_CONNECTIONS, PROBE_SECONDS + 2, 1
                )
                time.sleep(0.5)  # every thread taken
            try:
                result = run_load(endpoints[name], conns, PROBE_SECONDS)
            finally:
                if saturating is not None:
                    CHILDREN.stop(saturating)
            rounds.add((state, name, conns), result)
            say(
                f"  [1b] round {round_no + 1} ({number}/{len(configs) * LISTENER_ROUNDS}) "
                f"{state:<9} {name:<22} c={conns:<3} {result['rps']:>8.0f} req/s  "
                f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}"
            )
    CHILDREN.stop_redis(redis)
    rows = []
    for state in ("idle", "saturated"):
        for conns in (8, 32):
            for name in endpoints:
                key = (state, name, conns)
                rows.append(
                    (
                        state,
                        name,
                        conns,
                        rounds.median(key, "rps"),
                        rounds.median(key, "p50_ms"),
                        rounds.median(key, "p99_ms"),
                        int(rounds.total(key, "errors")),
                        rounds.ratio(key, ("idle", "/ok (app port)", conns), "rps"),
                    )
                )
    section.tables.append(
        table(
            ["app", "endpoint", "conns", "req/s", "p50 ms", "p99 ms", "errors", "x /ok idle"],
            rows,
        )
    )
    # Closed-loop loads: at these rates the CPU is the limit, so p99 is compared with
    # the app's own port measured in the same rounds, never with a fixed bound.
    for name in ("listener /live", "listener /ready"):
        for conns in (8, 32):
            p99 = rounds.median(("saturated", name, conns), "p99_ms")
            app = rounds.median(("saturated", "health/live (app port)", conns), "p99_ms")
            section.target(
                f"{name} p99 below health/live's on the app's port, saturated, {conns} conns",
                f"{p99:.1f} ms vs {app:.0f} ms",
                p99 < app,
            )
            ratio = rounds.ratio(
                ("saturated", name, conns), ("idle", "/ok (app port)", conns), "rps"
            )
            section.target(
                f"{name} req/s saturated >= /ok's with the app idle, {conns} conns",
                f"{ratio:.2f}x",
                ratio >= 1,
            )
        errors = sum(
            int(rounds.total((state, name, conns), "errors"))
            for state in ("idle", "saturated")
            for conns in (8, 32)
        )
        section.target(f"{name}: no errors", str(errors), errors == 0)
    return section


def profile_server(
    server: Gunicorn,
    path: str,
    conns: int,
    tag: str,
    focus: tuple[str, ...] = ("django_connhealth",),
) -> str:
    assert server.child is not None
    output = WORK / f"pyspy-{tag}.txt"
    output.unlink(missing_ok=True)
    spy = pyspy_record(server.child.pid, 6, output)
    time.sleep(1.0)  # py-spy attaches to the master and each worker
    run_load(server.base + path, conns, 5)
    try:
        _, err = spy.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        err = b"timed out"
    CHILDREN.stop(spy)
    summary = summarize_collapsed(output, focus=focus)
    if summary.startswith("(no"):
        return f"{summary}; py-spy said: {err[-400:].decode(errors='replace')}"
    return summary


# -- 2. pool overhead -------------------------------------------------------------------


def bench_pool() -> Section:
    section = Section("2", "Pool overhead: cache.set + cache.get in one process")
    section.method = [
        f"`bench/pool_overhead.py`: one process, a loop of `cache.set(k, n)` + `cache.get(k)` "
        f"(counted as 2 operations) through (a) a django-redis alias wrapped by `sized_caches` "
        f"(`SizedConnectionPool`: counters on, `CONNHEALTH_PUBLISH_SECONDS=1`), (b) a "
        f"django-redis alias with its default pool, (c) a django-redis alias with redis-py's "
        f"own `BlockingConnectionPool` of the sized pool's size (the class the sized pool "
        f"extends, without its counting, naming and publishing: it separates redis-py's cost "
        f"from ours), (d) `timeouts`: django-redis's default pool with the socket/connect "
        f"timeouts and `health_check_interval` that `sized_caches` fills in (in CPython a socket "
        f"with a timeout polls before every read and write: this separates the cost of those "
        f"settings from the pool's), (e) a raw `redis.Redis` (`set(ex=300)` + `get`, no "
        f"serialization). "
        f"Each on its own db of one loopback redis-server. "
        f"{POOL_ROUNDS} interleaved rounds of {POOL_SLICE:g} s per configuration (short slices, so "
        f"that the configurations of one round see the same machine); with 8 threads, the "
        f"threads share the client and its pool (sized for 8 threads: 10 connections).",
    ]
    redis = CHILDREN.redis(WORK / "redis-pool")
    rows = []
    outputs = {}
    for threads in (1, 8):
        out = subprocess.run(
            [PY, str(BENCH / "pool_overhead.py"), redis.url.rsplit("/", 1)[0],
             "--rounds", str(POOL_ROUNDS), "--seconds", str(POOL_SLICE),
             "--threads", str(threads)],
            env=base_env(), capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"pool_overhead.py failed:\n{out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        outputs[threads] = data
        results = data["results"]
        for config in ("sized", "default", "blocking", "timeouts", "redis-py"):
            pairs = zip(results[config], results["default"], strict=True)
            ratio = median(a / b for a, b in pairs if b)
            ops = median(results[config])
            rows.append((config, threads, ops, 1e6 / ops * threads, ratio))
            say(f"  [2] threads={threads} {config:<9} {ops:>9.0f} ops/s  x default {ratio:.3f}")
    section.tables.append(
        table(["client", "threads", "ops/s", "us per op per thread", "x django-redis default"],
              rows)
    )  # fmt: skip
    missed_threads = []
    for threads, data in outputs.items():
        results = data["results"]
        ratio = median(
            a / b for a, b in zip(results["sized"], results["default"], strict=True) if b
        )
        section.target(
            f"sized >= 0.97x django-redis default, {threads} thread{'s' if threads > 1 else ''}",
            f"{ratio:.3f}x",
            ratio >= 0.97,
        )
        if ratio < 0.97:
            missed_threads.append(threads)
        record = data.get("record") or {}
        section.notes.append(
            f"- {threads} thread(s): pool class {data.get('pool_class')}, "
            f"{data.get('records')} published record(s) found after the run "
            f"(max_connections {record.get('max_connections')}, "
            f"peak_in_use {record.get('peak_in_use')}, waits {record.get('waits')}, "
            f"timeouts {record.get('timeouts')})."
        )
    checkout = outputs[1]["checkout_us"]
    section.tables.append(
        "Pool checkout alone, the same pools, one thread: `get_connection()` + `release()` "
        f"of an open connection, no command ({POOL_ROUNDS} interleaved rounds of "
        f"{POOL_SLICE / 2:g} s):\n\n"
        + table(
            ["pool", "us per get_connection + release", "x django-redis default"],
            [
                (
                    config,
                    median(values),
                    median(a / b for a, b in zip(values, checkout["default"], strict=True)),
                )
                for config, values in checkout.items()
            ],
        )
    )
    if 1 in missed_threads:
        say("  [2] target missed with 1 thread: profiling with pyinstrument")
        out = subprocess.run(
            [PY, str(BENCH / "pool_overhead.py"), redis.url.rsplit("/", 1)[0], "--profile"],
            env=base_env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        section.profiles.append(
            (
                "pyinstrument, 1 thread: the cache loop (sized, then default), then pool "
                "checkout alone for each pool",
                out.stdout if out.returncode == 0 else out.stderr[-2000:],
            )
        )
    if 8 in missed_threads:
        say("  [2] target missed with 8 threads: profiling with py-spy")
        for config in ("sized", "default"):
            output = WORK / f"pyspy-pool-{config}-8.txt"
            output.unlink(missing_ok=True)
            cmd = [
                str(VENV_BIN / "py-spy"), "record", "--gil", "--rate", "500", "--format", "raw",
                "--output", str(output), "--",
                PY, str(BENCH / "pool_overhead.py"), redis.url.rsplit("/", 1)[0],
                "--spin", config, "--seconds", "4", "--threads", "8",
            ]  # fmt: skip
            out = subprocess.run(
                cmd, env=base_env(), capture_output=True, text=True, timeout=120, check=False
            )
            rate = next(
                (line for line in out.stdout.splitlines() if line.startswith("{")),
                out.stderr[-300:],
            )
            section.profiles.append(
                (
                    f"py-spy (`--gil`), 8 threads, `{config}`: 4 s of the loop; only samples "
                    f"inside the loop are counted; {rate}",
                    summarize_collapsed(
                        output,
                        top=12,
                        keep=lambda frame: frame.startswith("loop (bench/pool_overhead.py"),
                        focus=("django_connhealth", "Pool.", "Queue.", "Condition.", "queue.py"),
                    ),
                )
            )
    CHILDREN.stop_redis(redis)
    return section


# -- 3. under load ----------------------------------------------------------------------

MODES = {
    "sized": "sized_caches: SizedConnectionPool (blocking), max_connections = threads + 2",
    "default": "django-redis defaults: redis.ConnectionPool, unbounded",
    "undersized": "redis.ConnectionPool, max_connections 2 (non-blocking)",
    "per-request": "new connection per request, closed at request end",
}
LOAD_WORKERS, LOAD_THREADS, LOAD_CONNS = 4, 8, 64


def bench_load() -> Section:
    section = Section("3", "Under load: /work (3 cache calls), four pool configurations")
    section.method = [
        f"testproject (settings `bench.load_settings`, `BENCH_CACHE_MODE` per configuration) "
        f"under gunicorn, {LOAD_WORKERS} workers x {LOAD_THREADS} threads, gthread, "
        f"`--preload`; {loadgen()} with {LOAD_CONNS} keep-alive connections on `/work` "
        f"(cache get, set, get), {LOAD_SECONDS} s per run, {LOAD_ROUNDS} interleaved rounds. "
        f"The four configurations run side by side for the whole benchmark (one gunicorn and "
        f"one redis-server each, started first, warmed up 1 s; an idle one costs nothing), so "
        f"that short runs of each can alternate. Peak server connections: the highest "
        f"`connected_clients` of `INFO clients` on the configuration's own redis-server, "
        f"polled every 20 ms during each run on one connection of the benchmark's own "
        f"(included in the figure); the highest over rounds. req/s counts 2xx answers only; "
        f"errors = non-2xx + socket errors, summed over rounds.",
    ]
    redises = {}
    servers = {}
    for mode in MODES:
        redises[mode] = CHILDREN.redis(WORK / f"redis-load-{mode}")
        servers[mode] = Gunicorn(
            f"load-{mode}", settings="bench.load_settings", redis_url=redises[mode].url,
            workers=LOAD_WORKERS, threads=LOAD_THREADS, BENCH_CACHE_MODE=mode,
        ).start()  # fmt: skip
    for server in servers.values():
        run_load(server.base + "/work", LOAD_CONNS, 1)  # warm-up
    max_connections = sized_pool_size(servers["sized"], section)
    rounds = Rounds()
    for number, (round_no, mode) in enumerate(steps(LOAD_ROUNDS, list(MODES)), 1):
        with ClientsMonitor(redises[mode].url) as monitor:
            result = run_load(servers[mode].base + "/work", LOAD_CONNS, LOAD_SECONDS)
        result["peak"] = monitor.peak
        rounds.add(mode, result)
        say(
            f"  [3] round {round_no + 1} ({number}/{len(MODES) * LOAD_ROUNDS}) {mode:<12} "
            f"{result['ok_rps']:>7.0f} ok req/s  p99 {result['p99_ms']:.1f} ms  "
            f"errors {result['errors']}  peak conns {monitor.peak}"
        )
    limit = LOAD_WORKERS * max_connections + 1 if max_connections else None
    rows = []
    for mode, description in MODES.items():
        rows.append(
            (
                mode,
                description,
                rounds.median(mode, "ok_rps"),
                rounds.median(mode, "p50_ms"),
                rounds.median(mode, "p99_ms"),
                int(rounds.total(mode, "errors")),
                int(rounds.maximum(mode, "peak")),
                rounds.ratio("sized", mode, "ok_rps"),
            )
        )
    section.tables.append(
        table(["configuration", "pool", "ok req/s", "p50 ms", "p99 ms", "errors",
               "peak server conns", "sized / this"], rows)
    )  # fmt: skip
    errors = int(rounds.total("sized", "errors"))
    peak = int(rounds.maximum("sized", "peak"))
    others = [m for m in MODES if m != "sized"]
    best = max(others, key=lambda m: rounds.median(m, "ok_rps"))
    ratio = rounds.ratio("sized", best, "ok_rps")
    section.target("sized: 0 errors", str(errors), errors == 0)
    section.target(
        f"sized: peak server connections <= {LOAD_WORKERS} workers x {max_connections} "
        f"max_connections (+1 monitor) = {limit}",
        str(peak),
        limit is not None and peak <= limit,
    )
    section.target(
        f"sized: throughput >= 0.95x the best other configuration ({best})",
        f"{ratio:.2f}x",
        ratio >= 0.95,
    )
    if errors or (limit is not None and peak > limit) or ratio < 0.95:
        say(f"  [3] a sized-pool target was missed: profiling /work (sized, {best}) with py-spy")
        for mode in ("sized", best):
            section.profiles.append(
                (
                    f"py-spy on the gunicorn workers ({mode}) while wrk drives `/work` "
                    f"({LOAD_CONNS} conns, 5 s); samples of the thread holding the GIL",
                    profile_server(
                        servers[mode], "/work", LOAD_CONNS, f"load-{mode}",
                        focus=("django_connhealth", "Pool.", "Queue."),
                    ),
                )
            )  # fmt: skip
    for mode in MODES:
        servers[mode].stop()
        CHILDREN.stop_redis(redises[mode])
    return section


def sized_pool_size(server: Gunicorn, section: Section) -> int | None:
    """max_connections of the sized pools, from testproject's /pool (after some traffic)."""
    for _ in range(20):
        status, body = http_get(server.base + "/pool")
        answer = json.loads(body) if status == 200 else {}
        if answer.get("pools"):
            size = int(answer["pools"][0]["max_connections"])
            concurrency = answer["concurrency"]
            section.notes.append(
                f"- sized: each worker's pool has max_connections {size} "
                f"({concurrency['threads']} threads from {concurrency['sources']['threads']} "
                f"+ headroom {answer['headroom']}; {concurrency['workers']} workers from "
                f"{concurrency['sources']['workers']}), as `/pool` reports it."
            )
            return size
    section.notes.append("- sized: `/pool` did not report the pool size.")
    return None


# -- 4. the command ---------------------------------------------------------------------

#: The default maxclients, as a fleet of 250 pods x 4 workers would hold it (1,000 records).
HELD = 10_000
PER_PROCESS = 10
#: The command's share of the server's main thread at 10,000 clients (SLOWLOG), at most.
BLOCKED_TARGET_MS = 50.0
#: The command's wall time against manage.py check's, at most.
COMMAND_RATIO_TARGET = 1.5


def publish_fleet(client: Any, processes: int) -> None:
    """Each fake process's pool record, as a live worker publishes it: fresh as of now."""
    from django_connhealth.publish import index_key, record_key

    now = time.time()
    pipe = client.pipeline(transaction=False)
    for number in range(processes):
        host, pid = f"bench-host-{number // 20}", 100000 + number
        key = record_key(host, pid, "default")
        record = {
            "host": host, "pid": pid, "alias": "default", "max_connections": PER_PROCESS,
            "created": PER_PROCESS, "in_use": 3, "idle": PER_PROCESS - 3, "peak_in_use": 8,
            "waits": 0, "wait_seconds": 0.0, "timeouts": 0, "interval": 10.0,
            "published_at": now, "ttl": 600,
        }  # fmt: skip
        pipe.set(key, json.dumps(record), ex=600)
        pipe.zadd(index_key("default"), {key: now})
    pipe.execute()


def bench_command() -> Section:
    import redis as redis_py

    section = Section("4", f"The command with {HELD:,} client connections on the server")
    redis = CHILDREN.redis(WORK / "redis-command", "--maxclients", str(HELD + 100))
    holder = CHILDREN.start(
        "hold-connections",
        [PY, str(BENCH / "hold_connections.py"), "--port", str(redis.port), "--count", str(HELD),
         "--per-process", str(PER_PROCESS)],
        env=base_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.proc.stdout is not None
    assert holder.proc.stdin is not None
    line = holder.proc.stdout.readline().decode()
    if not line.startswith("READY"):
        raise RuntimeError(f"hold_connections.py did not start: {line!r}")
    processes = HELD // PER_PROCESS
    client = redis_py.Redis.from_url(redis.url)
    try:
        publish_fleet(client, processes)
        connected = int(client.info("clients")["connected_clients"])
    finally:
        client.close()
        client.connection_pool.disconnect()
    env = base_env(DJANGO_SETTINGS_MODULE="testproject.settings", REDIS_URL=redis.url)
    commands = {
        "python -m django check": [PY, "-m", "django", "check"],
        "python -m django connhealth --format json": [
            PY, "-m", "django", "connhealth", "--format", "json"],
    }  # fmt: skip
    for label, cmd in commands.items():
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                             check=False, cwd=ROOT)  # fmt: skip
        if out.returncode != 0:
            section.notes.append(f"- `{label}` exited {out.returncode}: {out.stderr[-300:]!r}")
        elif "connhealth" in label:
            report = json.loads(out.stdout)["caches"]["default"]
            section.notes.append(
                f"- The report it times: status {report['status']}, server connected_clients "
                f"{report['server']['connected_clients']}, {len(report['processes'])} processes "
                f"in `processes`, fleet {report['fleet']}; {len(out.stdout):,} bytes of JSON."
            )
    tool = "hyperfine" if shutil.which("hyperfine") else "python"
    runs = 7
    section.method = [
        f"A helper process (`bench/hold_connections.py`) holds {HELD:,} raw client connections "
        f"on a loopback redis-server, named like a fleet of {processes} processes using this "
        f"app ({PER_PROCESS} connections each, on 10 hosts), and each of those processes has a "
        f"published pool record, so the command has a whole fleet to group and report "
        f"(connected_clients {connected} before timing). Both commands run with "
        f"`DJANGO_SETTINGS_MODULE=testproject.settings` and the bench venv's Python. Timing: "
        f"{tool}" + (" (`-N`, 1 warm-up run)" if tool == "hyperfine" else " (wall clock)") +
        f", {runs} runs per command per round, {COMMAND_ROUNDS} interleaved rounds; the ratio "
        f"is the median of per-round median ratios.",
    ]  # fmt: skip
    times: dict[str, list[list[float]]] = {label: [] for label in commands}
    for round_no, label in steps(COMMAND_ROUNDS, list(commands)):
        samples = time_command(tool, commands[label], env, runs)
        times[label].append(samples)
        say(f"  [4] round {round_no + 1} {label:<44} median {1000 * median(samples):.0f} ms")
    check_label, cmd_label = list(commands)
    ratio = median(
        median(a) / median(b)
        for a, b in zip(times[cmd_label], times[check_label], strict=True)
        if b
    )
    rows = []
    for label in commands:
        flat = [t for samples in times[label] for t in samples]
        rows.append(
            (
                f"`{label}`",
                1000 * median(flat),
                1000 * min(flat),
                1000 * max(flat),
                len(flat),
                median(
                    median(a) / median(b)
                    for a, b in zip(times[label], times[check_label], strict=True)
                    if b
                ),
            )
        )
    section.tables.append(
        table(["command", "median ms", "min ms", "max ms", "runs", "x check"], rows)
    )
    section.target(
        f"connhealth --format json <= {COMMAND_RATIO_TARGET:g}x manage.py check",
        f"{ratio:.2f}x",
        ratio <= COMMAND_RATIO_TARGET,
    )
    blocked = server_blocked_by_command(redis.url, commands[cmd_label], env)
    section.tables.append(
        table(
            ["command the report sent", "calls", "longest µs", "total µs"],
            [(name, calls, longest, total) for name, (calls, longest, total) in blocked.items()],
        )
    )
    longest_ms = max((longest for _, longest, _ in blocked.values()), default=0) / 1000
    section.target(
        f"the server's main thread blocked by one command of the report < "
        f"{BLOCKED_TARGET_MS:g} ms at {HELD:,} clients (SLOWLOG)",
        f"{longest_ms:.1f} ms",
        longest_ms < BLOCKED_TARGET_MS,
    )
    scrape_env = {**env, "CONNHEALTH_TOKEN": "bench-token"}
    fresh = redis_py.Redis.from_url(redis.url)
    try:
        publish_fleet(fresh, processes)  # fresh records: a stale one is no scrape's
    finally:
        fresh.close()
        fresh.connection_pool.disconnect()
    scraped = subprocess.run(
        [PY, str(BENCH / "scrape_time.py")], env=scrape_env, capture_output=True, text=True,
        timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    if scraped.returncode == 0:
        cost = json.loads(scraped.stdout.strip().splitlines()[-1])
        section.tables.append(
            table(
                ["scrape of health/metrics", "median ms", "max ms", "bytes"],
                [
                    (f"`?scope=fleet` ({processes:,} records)", cost["fleet_median_ms"],
                     cost["fleet_max_ms"], cost["fleet_bytes"]),
                    ("this host (none of the records)", cost["host_median_ms"],
                     cost["host_max_ms"], cost["host_bytes"]),
                ],
            )
        )  # fmt: skip
    else:
        section.notes.append(f"- the scrape timing failed: {scraped.stderr[-300:]!r}")
    if ratio > COMMAND_RATIO_TARGET:
        say("  [4] target missed: profiling the command with pyinstrument")
        output = WORK / "pyinstrument-connhealth.txt"
        subprocess.run(
            [PY, "-m", "pyinstrument", "-r", "text", "-o", str(output), "-m", "django",
             "connhealth", "--format", "json"],
            env=env, capture_output=True, timeout=120, check=False, cwd=ROOT,
        )  # fmt: skip
        text = output.read_text(errors="replace") if output.exists() else "(no profile)"
        section.profiles.append(
            ("pyinstrument, `python -m django connhealth --format json`", "\n".join(
                text.splitlines()[:70]))
        )  # fmt: skip
    holder.proc.stdin.close()
    CHILDREN.stop(holder)
    holder.proc.stdout.close()
    CHILDREN.stop_redis(redis)
    return section


def server_blocked_by_command(
    url: str, cmd: list[str], env: dict[str, str]
) -> dict[str, tuple[int, int, int]]:
    """Per command the report sent: (calls, longest, total) microseconds of the server's
    main thread, from SLOWLOG with every command logged during one run of ``cmd``."""
    import redis as redis_py

    client = redis_py.Redis.from_url(url)
    try:
        previous = str(client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
        client.config_set("slowlog-max-len", 100_000)
        client.config_set("slowlog-log-slower-than", 0)
        client.slowlog_reset()
        subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False, cwd=ROOT)
        entries = client.slowlog_get(100_000)
        client.config_set("slowlog-log-slower-than", previous)
    finally:
        client.close()
        client.connection_pool.disconnect()
    blocked: dict[str, tuple[int, int, int]] = {}
    for entry in entries:
        command = entry["command"]
        words = (command.decode() if isinstance(command, bytes) else str(command)).split()
        name = " ".join(words[:2]).upper() if words[:1] == ["CLIENT"] else words[0].upper()
        if name in ("CONFIG", "SLOWLOG"):
            continue  # this function's own
        calls, longest, total = blocked.get(name, (0, 0, 0))
        duration = int(entry["duration"])
        blocked[name] = (calls + 1, max(longest, duration), total + duration)
    return dict(sorted(blocked.items(), key=lambda item: -item[1][1]))


def time_command(tool: str, cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    if tool == "hyperfine":
        export = WORK / "hyperfine.json"
        proc = CHILDREN.start(
            "hyperfine",
            ["hyperfine", "-N", "--style", "none", "--warmup", "1", "--runs", str(runs),
             "--export-json", str(export), " ".join(cmd)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = proc.proc.communicate(timeout=300)
        CHILDREN.stop(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"hyperfine failed: {err.decode(errors='replace')[-1000:]}")
        return list(json.loads(export.read_text())["results"][0]["times"])
    samples = []
    subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=False)  # warm-up
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=False)
        samples.append(time.perf_counter() - started)
    return samples


# -- publish_overhead (another engineer's script, run when present) ---------------------


def publish_overhead() -> Section | None:
    script = BENCH / "publish_overhead.py"
    if not script.exists():
        return None
    section = Section("5", "Publishing overhead (`bench/publish_overhead.py`)")
    redis = CHILDREN.redis(WORK / "redis-publish")
    say("  [5] running bench/publish_overhead.py")
    try:
        out = subprocess.run(
            [PY, str(script)], env=base_env(REDIS_URL=redis.url, BENCH_ROUNDS=str(LOAD_ROUNDS)),
            capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        )  # fmt: skip
        # Its headings become level 3, under this section's own.
        text = re.sub(r"^#+ ", "### ", out.stdout.strip(), flags=re.MULTILINE) or "(no output)"
        if out.returncode != 0:
            text += f"\n\n(exit status {out.returncode})\n{out.stderr[-1500:]}"
    except subprocess.TimeoutExpired:
        text = "(did not finish within 120 s)"
    finally:
        CHILDREN.stop_redis(redis)
    section.method = ["Output of `bench/publish_overhead.py`, run with `REDIS_URL` set:"]
    section.tables.append(text)
    return section


# -- machine, versions, RESULTS.md -------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    source = hashlib.sha256()
    for path in sorted((ROOT / "django_connhealth").rglob("*.py")):
        source.update(path.read_bytes())

    def tool_version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "not installed"
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"

    redis_version = tool_version(["redis-server", "--version"])
    match = re.search(r"v=(\S+)", redis_version)
    packages = ["Django", "redis", "django-redis", "gunicorn", "django-health-check",
                "django-watchman", "py-spy", "pyinstrument"]  # fmt: skip
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("CPU", f"{cpu}, nproc {os.cpu_count()}"),
        ("OS", f"{platform.system()} {platform.release()}, {platform.machine()}"),
        ("load average at start", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared box)"),
        ("Python", platform.python_version()),
        *((name, version(name)) for name in packages),
        ("redis-server", match.group(1) if match else redis_version),
        ("load generator", tool_version(["wrk", "-v"]) if load_generator() == "wrk"
         else "Python fallback (bench/pyload.py): wrk could not be installed"),
        ("command timer", tool_version(["hyperfine", "--version"]) if shutil.which("hyperfine")
         else "Python timing loop (hyperfine not installed)"),
        ("django_connhealth sources (sha256)", source.hexdigest()[:16]),
    ]  # fmt: skip


def write_results(sections: list[Section], info: list[tuple[str, str]], elapsed: float) -> str:
    summary = [
        (f"{s.number}. {text}", measured, verdict(ok))
        for s in sections
        for text, measured, ok in s.targets
    ]
    parts = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py); rerun it rather than editing this file.",
        f"All the benchmarks below come from one run, which took {elapsed / 60:.1f} minutes.",
        "",
        table(["", ""], info),
        "",
        "Method: every figure is the median over interleaved rounds (each round runs every "
        "configuration once, in an order that rotates between rounds); every ratio is the "
        "median of per-round ratios, both sides measured in the same round. All traffic is "
        "on loopback; the load generator shares the 2 CPUs with the servers it measures, and "
        "the machine is shared with other work, so absolute figures are noisy and the ratios "
        "are what to read.",
        "",
        "## Summary",
        "",
        table(["target", "measured", "result"], summary),
        "",
        *(section.render() for section in sections),
    ]
    text = "\n".join(parts).rstrip() + "\n"
    RESULTS.write_text(text)
    return text


def merge_results(sections: list[Section], info: list[tuple[str, str]], elapsed: float) -> str:
    """RESULTS.md with the sections of this run (BENCH_ONLY) in place of their old text.

    The other sections, the summary's rows of the other benchmarks and any
    section written by hand are kept; each section of this run says when it ran.
    """
    ran = {section.number for section in sections}
    when = dict(info)
    for section in sections:
        section.method.insert(
            0,
            f"_From a run of benchmark{'s' if len(ran) > 1 else ''} {', '.join(sorted(ran))} "
            f"alone, {when['date (UTC)']} UTC, {elapsed / 60:.1f} minutes, load average at "
            f"start {when['load average at start']}; the machine table above is the full "
            f"run's._\n",
        )
    head, *blocks = re.split(r"(?m)^(?=## )", RESULTS.read_text())

    def number(block: str) -> str | None:
        match = re.match(r"## (\d+[a-z]?)\. ", block)
        return match.group(1) if match else None

    def order(number: str) -> tuple[int, str]:
        """Benchmark 1 before 1b before 2."""
        match = re.match(r"(\d+)([a-z]?)", number)
        assert match is not None, number
        return int(match.group(1)), match.group(2)

    kept = [block.rstrip() + "\n\n" for block in blocks if number(block) not in ran]
    rows = []
    for index, block in enumerate(kept):
        if block.startswith("## Summary"):
            for line in block.splitlines()[4:]:
                cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
                if len(cells) == 3 and cells[0].split(".")[0] not in ran:
                    rows.append(tuple(cells))
            rows += [
                (f"{s.number}. {text}", measured, verdict(ok))
                for s in sections
                for text, measured, ok in s.targets
            ]
            rows.sort(key=lambda row: order(row[0].split(".")[0]))
            summary = table(["target", "measured", "result"], rows)
            kept[index] = f"## Summary\n\n{summary}\n\n"
    kept += [section.render().rstrip() + "\n\n" for section in sections]
    unnumbered = [block for block in kept if number(block) is None]
    numbered = sorted(
        (b for b in kept if number(b) is not None), key=lambda b: order(number(b) or "0")
    )
    text = (head + "".join(unnumbered + numbered)).rstrip() + "\n"
    RESULTS.write_text(text)
    return text


def faults_section() -> Section:
    from bench.faults import METHOD, bench_faults

    section = Section("6", "Faults under load: errors, connections and probes")
    section.method = [METHOD]
    bench_faults(section, say)
    return section


def main() -> int:
    stopper = Stopper()
    stopper.install()
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "var").mkdir(exist_ok=True)
    if shutil.which("redis-server") is None:
        print("bench: redis-server not found: install the Debian package `redis-server`.")
        return 2
    info = machine()
    say("Machine and versions:")
    say(table(["", ""], info))
    sections: list[Section] = []
    status = 0
    plan = [
        ("1", bench_probes),
        ("1", bench_listener),
        ("2", bench_pool),
        ("3", bench_load),
        ("4", bench_command),
    ]
    try:
        for number, bench in plan:
            if number not in ONLY:
                continue
            say(f"\n== benchmark {number} ==")
            t0 = time.monotonic()
            section = bench()
            sections.append(section)
            say(section.render())
            say(f"(benchmark {number}: {time.monotonic() - t0:.0f} s)")
        extra = publish_overhead() if "5" in ONLY else None
        if extra is not None:
            sections.append(extra)
            say(extra.render())
        if "6" in ONLY:
            say("\n== benchmark 6 ==")
            t0 = time.monotonic()
            sections.append(faults_section())
            say(sections[-1].render())
            say(f"(benchmark 6: {time.monotonic() - t0:.0f} s)")
    except Stopped as stop:
        say(f"\nbench: interrupted ({stop.name}): stopping everything it started.")
        status = 130
    except Exception:
        traceback.print_exc()
        say("bench: failed: stopping everything it started.")
        status = 1
    finally:
        stopper.stopping()
        CHILDREN.stop_all()
    if status == 0:
        elapsed = time.monotonic() - started
        if set(EVERY) <= ONLY or not RESULTS.exists():
            write_results(sections, info, elapsed)
        else:
            merge_results(sections, info, elapsed)
        missed = [t for s in sections for t in s.targets if not t[2]]
        say(f"\nWrote {RESULTS} in {elapsed:.0f} s; "
            f"{len(missed)} target(s) missed.")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
