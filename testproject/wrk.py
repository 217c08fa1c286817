"""wrk, the load generator of the benchmarks and the fault tests: its command and its result.

``command()`` is a wrk command line that ends with one ``WRKJSON {...}`` line
(testproject/wrk_report.lua: exact percentiles in microseconds, error counts);
``parse()`` turns that output into figures. Starting and stopping wrk is the
caller's (testproject.supervisor).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["LUA", "command", "parse"]

#: The reporting hook: one JSON line when wrk is done.
LUA = Path(__file__).absolute().with_name("wrk_report.lua")
_LINE = re.compile(rb"^WRKJSON (.*)$", re.MULTILINE)


def command(
    url: str, connections: int, seconds: float, threads: int = 2, timeout: float = 5.0
) -> list[str]:
    """``wrk`` with ``connections`` keep-alive connections on ``url`` for ``seconds``."""
    threads = max(1, min(threads, connections))
    return [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
        "--timeout", f"{timeout:g}s", "-s", str(LUA), url,
    ]  # fmt: skip


def parse(out: bytes) -> dict[str, float]:
    """The figures of a run from wrk's output; ValueError when it holds no result.

    ``errors`` is non-2xx/3xx answers (``non2xx``) plus ``socket_errors``
    (connect, read, write errors and timeouts).
    """
    match = _LINE.search(out)
    if match is None:
        raise ValueError(f"no WRKJSON line in the load generator's output: {out[-500:]!r}")
    raw = json.loads(match.group(1))
    seconds_run = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds_run,
        "ok_rps": (raw["requests"] - raw["status"]) / seconds_run,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non2xx": raw["status"],
        "socket_errors": socket_errors,
        "timeouts": raw["timeout"],
        "errors": raw["status"] + socket_errors,
    }
