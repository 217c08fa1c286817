"""Benchmark 4 helper: the time of one ``health/metrics`` scrape, in this process.

Run with ``DJANGO_SETTINGS_MODULE``, ``REDIS_URL`` and ``CONNHEALTH_TOKEN`` set,
against a server holding the fleet's records. Prints one JSON line: the median
and the slowest of ``--runs`` scrapes, in ms, for the fleet and for one host,
and the size of the fleet's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    django.setup()
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {os.environ['CONNHEALTH_TOKEN']}")
    result: dict[str, float] = {}
    for label, query in (("fleet", {"scope": "fleet"}), ("host", {})):
        client.get("/health/metrics", query)  # the pools made, the URLconf loaded
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get("/health/metrics", query)
            times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, response.status_code
        result[f"{label}_median_ms"] = round(statistics.median(times), 2)
        result[f"{label}_max_ms"] = round(max(times), 2)
        result[f"{label}_bytes"] = len(response.content)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
