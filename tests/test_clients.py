"""The server's connections sorted out (``django_connhealth.clients``), then as the command
reports them against a real redis-server: others by name, and orphaned processes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import redis
from django.test import override_settings

from django_connhealth.clients import sort_clients
from django_connhealth.conf import client_host
from tests.helpers import connhealth, redis_caches, report_json, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import StartRedis

ME = ("web-9", 99)


def entry(name: str, db: int = 0, age: int = 5, idle: int = 1) -> dict[str, object]:
    return {"name": name, "db": str(db), "age": str(age), "idle": str(idle)}


def test_ours_and_others() -> None:
    clients = sort_clients(
        [
            entry("connhealth:web-1:10:default", age=7),
            entry("connhealth:web-1:10:default", age=3),
            entry("connhealth:web-2:20:default"),
            entry("connhealth:web-2:20:sessions"),  # another alias: a sized pool all the same
            entry("connhealth:web-3:30:default", db=1),  # another db: another project's
            entry("connhealth:web-9:99:default"),  # the command's own
            entry("celery-broker", db=3, idle=12),
            entry("celery-broker", idle=40),
            entry("", idle=2),
            entry("rq:worker:1", idle=0),
            entry("", db=5, idle=9),
        ],
        "0",
        "default",
        ME,
    )
    assert clients.ours == {("web-1", 10): [7, 3], ("web-2", 20): [5]}
    assert clients.others == [
        {"name": "celery-broker", "connections": 2, "idle_seconds_max": 40},
        {"name": None, "connections": 2, "idle_seconds_max": 9},
        {"name": "rq:worker:1", "connections": 1, "idle_seconds_max": 0},
    ]
    assert clients.others_connections == 5
    assert clients.sized_elsewhere == 2  # the sessions alias's, and db 1's
    assert clients.held_by_others == 7


def test_nothing_on_the_server() -> None:
    clients = sort_clients([], "0", "default", ME)
    assert (clients.ours, clients.others, clients.others_connections) == ({}, [], 0)


@contextlib.contextmanager
def connections(url: str, names: list[str | None]) -> Iterator[list[redis.Redis]]:
    """One open connection per name (``None``: unnamed), closed after."""
    opened = []
    try:
        for name in names:
            client = redis.Redis.from_url(url, client_name=name, single_connection_client=True)
            client.ping()
            opened.append(client)
        yield opened
    finally:
        for client in opened:
            client.close()


def test_others_and_orphans_on_a_real_server(start_redis: StartRedis) -> None:
    server = start_redis()
    orphan = f"connhealth:{client_host({})}:4194000:default"  # a pid with no record
    names: list[str | None] = ["celery-broker", "celery-broker", "celery-broker"]
    names += [None, None, orphan, orphan]
    with (
        override_settings(CACHES=redis_caches(server.url)),
        connections(server.url, names),
    ):
        wait_for(lambda: len(server.client_list()) >= len(names), what="the connections")
        report, code = report_json()
        text, _, _ = connhealth()
    assert code == 0
    cache = report["caches"]["default"]
    others = {group["name"]: group for group in cache["others"]}
    assert set(others) == {"celery-broker", None}
    assert others["celery-broker"]["connections"] == 3
    assert others[None]["connections"] == 2
    assert all(isinstance(group["idle_seconds_max"], int) for group in cache["others"])
    [row] = cache["processes"]
    assert (row["pid"], row["connections"], row["orphaned"]) == (4194000, 2, True)
    assert row["max_connections"] is None  # it never published
    assert cache["fleet"]["budget"]["spare"] == (
        cache["fleet"]["budget"]["maxclients"] - cache["fleet"]["budget"]["needed_with_surge"] - 5
    )
    [others_line] = [line for line in text.splitlines() if line.startswith("  others (")]
    assert others_line.startswith(
        "  others (connections no sized pool opened): celery-broker 3 (idle up to "
    )
    assert ", (unnamed) 2 (idle up to " in others_line
    [orphan_row] = [line for line in text.splitlines() if " 4194000 " in line]
    assert orphan_row.endswith(" orphaned")
