"""HTTP for the demo and the tests: one GET, many at once, and the demo's pool table."""

from __future__ import annotations

import collections
import http.client
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Seconds one request may take.
REQUEST_TIMEOUT = 10.0


def get(url: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int | str, bytes]:
    """GET ``url``: (HTTP status, body), or (error name, b"") when there is no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return type(reason).__name__ if isinstance(reason, BaseException) else str(reason), b""


def fan_out(urls: Sequence[str], clients: int) -> list[tuple[int | str, bytes]]:
    """GET every URL, ``clients`` at a time."""
    executor = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="demo-client")
    try:
        return list(executor.map(get, urls))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def send_traffic(base: str, requests: int, clients: int, *, quiet: bool = False) -> None:
    paths = ["/work", "/", "/work"]
    urls = [base + paths[i % len(paths)] for i in range(requests)]
    started = time.monotonic()
    results = fan_out(urls, clients)
    elapsed = time.monotonic() - started
    statuses = collections.Counter(status for status, _ in results)
    summary = ", ".join(f"{count} answered {status}" for status, count in statuses.most_common())
    if quiet:
        return
    print(
        f"Traffic: {requests} requests to / and /work from {clients} threads "
        f"in {elapsed:.1f} s: {summary}."
    )


def worker_pools(base: str, workers: int, clients: int) -> dict[int, dict[str, Any]]:
    """The /pool answer of each worker, asking until all ``workers`` have answered."""
    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 10.0
    while len(answers) < workers and time.monotonic() < deadline:
        # Concurrent asks, so that every worker's accept loop gets its turn.
        for status, body in fan_out([f"{base}/pool"] * clients, clients):
            if status == 200:
                answer = json.loads(body)
                answers[answer["pid"]] = answer
    return answers


def print_pools(answers: dict[int, dict[str, Any]], workers: int) -> None:
    if not answers:
        print("No worker answered /pool.")
        return
    first = next(iter(answers.values()))
    concurrency = first["concurrency"]
    sources = concurrency["sources"]
    sizes = {pool["max_connections"] for answer in answers.values() for pool in answer["pools"]}
    print(
        f"Pools, one per worker process, sized for {concurrency['worker_class']}: "
        f"{concurrency['workers']} workers (from {sources['workers']}) "
        f"x {concurrency['threads']} threads (from {sources['threads']})"
    )
    size = ", ".join(map(str, sorted(sizes))) or "?"
    source = first["sources"]["max_connections"]
    if source == "derived":
        threads, headroom = concurrency["threads"], first["headroom"]
        print(f"  max_connections {size} = {threads} threads + headroom {headroom}")
    else:
        print(f"  max_connections {size} (from {source})")
    columns = {
        "max_connections": "max",
        "created": "created",
        "in_use": "in use",
        "idle": "idle",
        "peak_in_use": "peak",
        "waits": "waits",
        "timeouts": "timeouts",
    }
    print(f"  {'worker pid':<10}  {'alias':<10}" + "".join(f"{c:>9}" for c in columns.values()))
    for pid, answer in sorted(answers.items()):
        if not answer["pools"]:
            print(f"  {pid:<10}  (no pool yet: this worker has served no cache request)")
        for pool in answer["pools"]:
            figures = "".join(f"{pool[key]:>9}" for key in columns)
            print(f"  {pid:<10}  {pool['alias']:<10}{figures}")
    print(f"gunicorn workers: pids {', '.join(map(str, sorted(answers)))}")
    if len(answers) < workers:
        print(f"({len(answers)} of {workers} workers answered /pool.)")
