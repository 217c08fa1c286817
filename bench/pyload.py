"""Fallback load generator, used only when ``wrk`` cannot be installed.

N keep-alive HTTP/1.1 connections on one asyncio loop, each sending GETs back to
back for ``--seconds``. Prints the same ``WRKJSON`` line as testproject/wrk_report.lua.
It is much slower than wrk and shares the CPU with the server under test: every
table made with it says so, and its figures are not comparable with wrk's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def client(
    host: str,
    port: int,
    target: str,
    deadline: float,
    latencies: list[float],
    errors: dict[str, int],
) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            assert reader is not None
            started = time.monotonic()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status = int(head.split(b" ", 2)[1])
            length = 0
            close = chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            if chunked:
                await asyncio.wait_for(read_chunked(reader), 5)
            else:
                await asyncio.wait_for(reader.readexactly(length), 5)
            latencies.append(time.monotonic() - started)
            if not 200 <= status < 400:
                errors["status"] += 1
            if close:
                writer.close()
                writer = None
        except asyncio.TimeoutError:
            errors["timeout"] += 1
            writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors["read"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)  # the chunk and its CRLF
        if size == 0:
            return


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def run(url: str, connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(client(host, port, target, deadline, latencies, errors) for _ in range(connections))
    )
    duration = time.monotonic() - started
    us = [value * 1e6 for value in latencies]
    return {
        "requests": len(us),
        "duration_us": int(duration * 1e6),
        "bytes": 0,
        **errors,
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "max_us": max(us, default=0.0),
        "mean_us": sum(us) / len(us) if us else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.connections, args.seconds))
    print("WRKJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
