"""``manage.py connhealth`` against real redis-servers, workers and gunicorn.

The in-process tests run the command with ``call_command`` while other
processes (``tests.servers.cache_worker``: a minimal Django that publishes its
pool figures) hold connections on the same server. The gunicorn tests run
testproject under real gunicorn and the command as ``python -m django
connhealth``, the way an operator runs it next to a deployment.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core.cache import cache as default_cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_connhealth import publish, sized_caches
from django_connhealth.conf import client_host
from django_connhealth.factory import ConnectionFactory
from django_connhealth.naming import client_name
from testproject import supervisor
from testproject.supervisor import free_port
from tests.helpers import (
    BOOTED,
    SLOW,
    connhealth,
    gunicorn,
    pools_of_every_worker,
    redis_caches,
    report_json,
    unique_host,
    wait_for,
)
from tests.servers import Load, cache_worker, child_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import RedisDB, StartRedis
    from tests.redis_server import RedisServer, SilentListener

PID = os.getpid()
# Not resolved: under tox, the directory of links tests/import_root.py makes, so a
# child started here imports django_connhealth from where this process does.
ROOT = Path(__file__).absolute().parent.parent
#: What an unreachable alias may take to report (socket timeouts are 0.5 s and
#: 1 s; the rest is slack for a loaded two-core machine).
UNREACHABLE_BOUND = 4.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")

SPEC_PROCESS_KEYS = {
    "host",
    "pid",
    "connections",
    "in_use",
    "idle",
    "peak_in_use",
    "waits",
    "timeouts",
    "age_seconds",
    "max_connections",
    "held_longest_seconds",
}
#: Keys a ``processes`` entry carries beyond the SPEC's (it allows more).
EXTRA_PROCESS_KEYS = {
    "wait_seconds",
    "stale",
    "named",
    "role",
    "ghost_connections",
    "orphaned",
    "leaks",
}


# ---------------------------------------------------------------------- helpers


def per_process(db: RedisDB, alias: str = "default") -> dict[tuple[str, int], int]:
    """CLIENT LIST's connections to ``db`` named by this app for ``alias``, per (host, pid)."""
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    for entry in db.server.client_list():
        if entry.get("db") != str(db.db):
            continue
        parts = entry.get("name", "").split(":")
        if len(parts) == 4 and parts[0] == "connhealth" and parts[3] == alias:
            counts[(parts[1], int(parts[2]))] += 1
    return dict(counts)


def rows_by_pid(cache: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["pid"]: row for row in cache["processes"]}


def stable_report(db: RedisDB, *args: str) -> tuple[dict[str, Any], dict[tuple[str, int], int]]:
    """A JSON report and CLIENT LIST's counts, taken when nothing opened a connection
    in between (a worker's publish may open one now and then)."""
    deadline = time.monotonic() + SLOW
    while True:
        before = per_process(db)
        report, code = report_json(*args)
        after = per_process(db)
        assert code == 0, report
        if before == after:
            return report, after
        assert time.monotonic() < deadline, (before, after)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command computes concurrency from the environment: make it the defaults."""
    for key in list(os.environ):
        if key.startswith(("CONNHEALTH_", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "UWSGI_")):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _publishing_left_on() -> Iterator[None]:
    """Running the command in-process must not switch off this process's publishing."""
    assert publish.is_enabled() is True
    yield
    assert publish.is_enabled() is True


# ------------------------------------------------------------- JSON and table


def test_json_has_the_spec_keys_and_the_fleet(redis_db: RedisDB, tmp_path: Path) -> None:
    host = unique_host()
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, host, hold=1, log_path=tmp_path / "worker.log") as worker,
    ):
        report, clients = stable_report(redis_db)

    assert set(report) == {"concurrency", "caches"}
    assert report["concurrency"] == {
        "workers": 1,
        "threads": 1,
        "worker_class": "sync",
        "role": "other",
        "sources": {"workers": "default", "threads": "default", "worker_class": "default"},
    }
    assert set(report["caches"]) == {"default"}
    cache = report["caches"]["default"]
    # "notes" is left out of JSON when there is none.
    assert set(cache) == {"status", "pools", "server", "processes", "fleet", "others"}
    assert cache["status"] == "pass"

    [pool] = cache["pools"]
    assert pool == {
        "location": redis_db.url,
        "max_connections": 3,
        "timeout": 2.0,
        "socket_timeout": 1.0,
        "socket_connect_timeout": 0.5,
        "health_check_interval": 30,
        "sources": {
            "max_connections": "derived",
            "timeout": "default",
            "socket_timeout": "default",
            "socket_connect_timeout": "default",
            "health_check_interval": "default",
        },
    }
    assert set(cache["server"]) == {"connected_clients", "maxclients"}
    assert cache["server"]["connected_clients"] >= 2  # the worker's and the command's
    assert isinstance(cache["server"]["maxclients"], int)

    [row] = cache["processes"]
    assert set(row) == SPEC_PROCESS_KEYS | EXTRA_PROCESS_KEYS
    assert (row["host"], row["pid"]) == (host, worker.pid)
    assert (
        row["connections"] == clients[(host, worker.pid)] >= 2
    )  # one held, one in use now and then
    assert row["max_connections"] == 3
    assert row["in_use"] >= 1  # the one it holds
    assert row["idle"] >= 0
    assert row["peak_in_use"] >= 1
    assert (row["waits"], row["timeouts"]) == (0, 0)
    assert 0 <= row["age_seconds"] <= 2.0  # published every second
    assert row["stale"] is False

    budget = cache["fleet"].pop("budget")
    assert cache["fleet"] == {
        "processes": 1,
        "connections": row["connections"],
        "max_connections": 3,
    }
    assert budget["fleet_max_connections"] == 3
    assert budget["needed_with_surge"] == 4  # 3.75, rounded up
    assert row["orphaned"] is False


def test_json_processes_across_hosts_and_figures_not_published_are_null(
    redis_db: RedisDB, tmp_path: Path
) -> None:
    hosts = sorted([unique_host(), unique_host()])
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, hosts[0], hold=2, log_path=tmp_path / "w0.log") as first,
        cache_worker(redis_db.url, hosts[1], hold=0, log_path=tmp_path / "w1.log") as second,
        redis_db.server.client(redis_db.db) as client,
    ):
        # A third process holding a named connection but publishing nothing.
        client.client_setname("connhealth:legacy:4242:default")
        report, clients = stable_report(redis_db)

    cache = report["caches"]["default"]
    rows = {(row["host"], row["pid"]): row for row in cache["processes"]}
    assert sorted(rows) == sorted([(hosts[0], first.pid), (hosts[1], second.pid), ("legacy", 4242)])
    for key, row in rows.items():
        assert row["connections"] == clients[key]
    assert rows[(hosts[0], first.pid)]["in_use"] >= 2
    legacy = rows[("legacy", 4242)]
    assert legacy["connections"] == 1
    assert {
        key: legacy[key] for key in SPEC_PROCESS_KEYS - {"host", "pid", "connections"}
    } == dict.fromkeys(SPEC_PROCESS_KEYS - {"host", "pid", "connections"})
    assert legacy["stale"] is False
    assert cache["fleet"].pop("budget")["fleet_max_connections"] == 6
    assert cache["fleet"] == {
        "processes": 3,
        "connections": sum(row["connections"] for row in rows.values()),
        "max_connections": 6,  # the two that published; the third's is unknown
    }


def test_processes_on_another_db_are_not_counted(redis_db: RedisDB, tmp_path: Path) -> None:
    other = redis_db.server.url_for(redis_db.db % 15 + 1)
    host = unique_host()
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, host, log_path=tmp_path / "w0.log") as here,
        cache_worker(other, host, log_path=tmp_path / "w1.log") as there,
    ):
        report, code = report_json()
    assert code == 0
    cache = report["caches"]["default"]
    # Both name their connections connhealth:<host>:<pid>:default, on one server.
    assert [row["pid"] for row in cache["processes"]] == [here.pid]
    assert there.pid != here.pid
    assert cache["fleet"]["processes"] == 1


def _table_lines(out: str) -> tuple[list[str], list[str]]:
    """The process table of the first alias: header and rows, without indent."""
    lines = out.splitlines()
    start = next(
        i
        for i, line in enumerate(ANSI.sub("", line) for line in lines)
        if line.startswith("  ROLE")
    )
    table = []
    for line in lines[start:]:
        if ANSI.sub("", line).startswith("  fleet:"):
            break
        table.append(line)
    return table[:1], table[1:]


def test_table_is_aligned_and_plain_under_no_color(redis_db: RedisDB, tmp_path: Path) -> None:
    hosts = [unique_host(), "h"]  # host names of different widths
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, hosts[0], log_path=tmp_path / "w0.log") as first,
        cache_worker(redis_db.url, hosts[1], log_path=tmp_path / "w1.log") as second,
    ):
        out, err, code = connhealth(no_color=True)

    assert (err, code) == ("", 0)
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[:3] == [
        "This command's own process: 1 workers (default) x 1 threads (default), sync; "
        "each process below runs its own pool",
        "",
        "Cache 'default'  pass",
    ]
    assert lines[3] == f"  pool {redis_db.url}"
    assert lines[4] == (
        "    max_connections 3 (derived)  timeout 2.0 (default)  socket_timeout 1.0 (default)  "
        "socket_connect_timeout 0.5 (default)  health_check_interval 30 (default)"
    )
    assert re.fullmatch(r"  server connected_clients \d+  maxclients \d+", lines[5])
    [header], rows = _table_lines(out)
    titles = [
        "ROLE", "HOST", "PID", "CONNS", "IN USE", "IDLE", "PEAK", "WAITS", "TIMEOUTS", "MAX", "AGE"
    ]  # fmt: skip
    starts = [header.index(title) for title in titles]
    assert starts == sorted(starts)
    assert len(rows) == 2
    for row in rows:
        for start in starts[1:]:
            # Every column starts where its title does, after a gap of two spaces.
            assert row[start - 2 : start] == "  ", (row, start)
            assert row[start] != " ", (row, start)
    by_host = {row.split()[1]: row.split() for row in rows}
    assert by_host[hosts[0]][2] == str(first.pid)
    assert by_host["h"][2] == str(second.pid)
    assert all(re.fullmatch(r"\d+(\.\d+)?s", cells[10]) for cells in by_host.values())
    assert all(cells[0] == "other" for cells in by_host.values())  # the workers: scripts
    # then the fleet, its budget and (on a shared server) the others' connections
    fleet_at = next(n for n, line in enumerate(lines) if line.startswith("  fleet: "))
    assert re.fullmatch(
        r"  fleet: 2 processes, \d+ connections, pools up to 6 connections \(maxclients \d+\)",
        lines[fleet_at],
    )
    assert re.fullmatch(
        r"  budget: 6 connections, 8 with a 25% surge; maxclients (\d+) leaves \d+ spare, "
        r"room for \d+ more processes like the largest",
        lines[fleet_at + 1],
    )
    assert all(line.startswith("  others (") for line in lines[fleet_at + 2 :])


def test_table_is_colored_under_force_color(redis_db: RedisDB, tmp_path: Path) -> None:
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, unique_host(), log_path=tmp_path / "w.log"),
    ):
        out, err, code = connhealth(force_color=True)
    assert (err, code) == ("", 0)
    assert ANSI.search(out)
    plain = ANSI.sub("", out)
    assert "Cache 'default'  pass" in plain
    [header], rows = _table_lines(out)
    assert ANSI.search(header)
    assert len(rows) == 1


def test_json_is_never_colored(redis_db: RedisDB) -> None:
    with override_settings(CACHES=redis_caches(redis_db.url)):
        out, err, code = connhealth("--format", "json", force_color=True)
    assert (err, code) == ("", 0)
    assert "\x1b[" not in out
    json.loads(out)


def test_no_sized_alias() -> None:
    # tests/settings.py: only a locmem cache
    out, err, code = connhealth(no_color=True)
    assert (out, err, code) == (
        "This command's own process: 1 workers (default) x 1 threads (default), sync; "
        "each process below runs its own pool\n"
        "No sized Redis cache alias: wrap CACHES with sized_caches().\n",
        "",
        0,
    )
    report, code = report_json()
    assert (report["caches"], code) == ({}, 0)


# -------------------------------------------------------------------- options


def two_aliases(redis_db: RedisDB) -> dict[str, dict[str, Any]]:
    other_db = redis_db.db % 15 + 1
    return sized_caches(
        {
            "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_db.url},
            "sessions": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": redis_db.server.url_for(other_db),
            },
            "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        },
        environ={},
    )


def test_alias_filter(redis_db: RedisDB) -> None:
    with override_settings(CACHES=two_aliases(redis_db)):
        everything, code = report_json()
        assert (list(everything["caches"]), code) == (["default", "sessions"], 0)
        only, code = report_json("--alias", "sessions")
        assert (list(only["caches"]), code) == (["sessions"], 0)
        both, code = report_json("--alias", "sessions", "--alias", "default")
        assert (sorted(both["caches"]), code) == (["default", "sessions"], 0)
        out, err, code = connhealth("--alias", "sessions", no_color=True)
    assert (err, code) == ("", 0)
    assert "Cache 'sessions'  pass" in out
    assert "Cache 'default'" not in out


@pytest.mark.parametrize("alias", ["nope", "local"])
def test_unknown_alias_is_an_error(alias: str, redis_db: RedisDB) -> None:
    with override_settings(CACHES=two_aliases(redis_db)):
        out, err, code = connhealth("--alias", "default", "--alias", alias, no_color=True)
    assert (out, code) == ("", 1)
    assert err == (
        f"CommandError: --alias {alias!r} is not a sized django-redis cache alias "
        f"(sized aliases: default, sessions).\n"
    )


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "3601"])
def test_watch_needs_a_number_of_seconds(value: str) -> None:
    out, err, code = connhealth("--watch", value, no_color=True)
    assert (out, code) == ("", 1)
    assert err == (
        f"CommandError: --watch {value!r} is not valid: "
        f"give a number of seconds from 0.1 to 3600.\n"
    )


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'yaml'"):
        call_command("connhealth", "--format", "yaml")


# ---------------------------------------------------------------- unreachable


def _unreachable(location: str, *args: str) -> tuple[str, str, int, float]:
    caches = redis_caches(location)
    with override_settings(CACHES=caches):
        started = time.monotonic()
        out, err, code = connhealth(*args, no_color=True)
        return out, err, code, time.monotonic() - started


def test_nobody_listening_table(redis_db: RedisDB) -> None:
    location = f"redis://127.0.0.1:{free_port()}/0"
    out, err, code, took = _unreachable(location)
    assert code == 1
    assert took < UNREACHABLE_BOUND
    assert err == "CommandError: failing: default (the report's notes say why)\n"
    assert "Cache 'default'  fail" in out
    [line] = [line for line in out.splitlines() if "unreachable" in line]
    assert line.startswith(f"  {location} unreachable: ConnectionError: ")
    assert "Traceback" not in out
    assert "fleet:" not in out


def test_nobody_listening_json(redis_db: RedisDB) -> None:
    location = f"redis://127.0.0.1:{free_port()}/0"
    out, err, code, took = _unreachable(location, "--format", "json")
    assert code == 1
    assert took < UNREACHABLE_BOUND
    assert err == "CommandError: failing: default (the report's notes say why)\n"
    cache = json.loads(out)["caches"]["default"]
    assert cache["status"] == "fail"
    assert (cache["server"], cache["processes"], cache["fleet"]) == (None, [], None)
    assert cache["pools"][0]["error"].startswith("ConnectionError: ")
    [note] = cache["notes"]
    assert note.startswith(f"{location} unreachable: ConnectionError: ")


def test_server_that_never_answers(silent_listener: SilentListener) -> None:
    out, err, code, took = _unreachable(silent_listener.url)
    assert code == 1
    assert took < UNREACHABLE_BOUND  # the socket timeout (1 s), not a hang
    assert err == "CommandError: failing: default (the report's notes say why)\n"
    [line] = [line for line in out.splitlines() if "unreachable" in line]
    assert line.startswith(f"  {silent_listener.url} unreachable: TimeoutError: ")


def test_one_alias_down_fails_the_command_but_reports_the_other(redis_db: RedisDB) -> None:
    caches = sized_caches(
        {
            "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_db.url},
            "down": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            },
        },
        environ={},
    )
    with override_settings(CACHES=caches):
        out, err, code = connhealth("--format", "json")
    assert (err, code) == ("CommandError: failing: down (the report's notes say why)\n", 1)
    report = json.loads(out)
    assert report["caches"]["default"]["status"] == "pass"
    assert report["caches"]["down"]["status"] == "fail"


# ---------------------------------------------------------- secrets and ACLs


SECRET = "pa55-secret"


def test_password_never_shown(start_redis: StartRedis, tmp_path: Path) -> None:
    server = start_redis(password=SECRET)
    with (
        override_settings(CACHES=redis_caches(server.url)),
        cache_worker(server.url, unique_host(), log_path=tmp_path / "w.log") as worker,
    ):
        table, table_err, table_code = connhealth(no_color=True)
        text, json_err, json_code = connhealth("--format", "json")
    assert (table_code, json_code) == (0, 0)
    masked = f"redis://:***@127.0.0.1:{server.port}/0"
    for output in (table, table_err, text, json_err):
        assert SECRET not in output
    assert f"pool {masked}" in table
    cache = json.loads(text)["caches"]["default"]
    assert cache["pools"][0]["location"] == masked
    assert [row["pid"] for row in cache["processes"]] == [worker.pid]


def test_password_never_shown_when_unreachable_or_refused(start_redis: StartRedis) -> None:
    server = start_redis(password=SECRET)
    wrong = f"redis://:{SECRET}-not@127.0.0.1:{server.port}/0"
    down = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    for location in (wrong, down):
        for args in ((), ("--format", "json")):
            out, err, code, _ = _unreachable(location, *args)
            assert code == 1
            assert SECRET not in out + err
            assert "***" in out


def test_acl_without_client_list(start_redis: StartRedis, tmp_path: Path) -> None:
    server = start_redis()
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-client|list"
        )
    limited = f"redis://limited:pw@127.0.0.1:{server.port}/0"
    with (
        override_settings(CACHES=redis_caches(limited)),
        cache_worker(server.url, unique_host(), hold=1, log_path=tmp_path / "w.log") as worker,
    ):
        out, err, code = connhealth(no_color=True)
        text, json_err, json_code = connhealth("--format", "json")

    assert (err, code) == ("", 0)
    refused = [line for line in out.splitlines() if "CLIENT LIST" in line]
    assert refused == [
        "  CLIENT LIST refused by the server's ACL: connection counts unknown; "
        "showing published figures."
    ]
    assert (json_err, json_code) == ("", 0)
    cache = json.loads(text)["caches"]["default"]
    assert cache["status"] == "pass"
    assert cache["pools"][0]["location"] == f"redis://limited:***@127.0.0.1:{server.port}/0"
    assert cache["notes"] == [refused[0].strip()]
    [row] = cache["processes"]
    assert row["pid"] == worker.pid
    assert row["connections"] is None  # unknown, not 0
    assert row["in_use"] >= 1
    assert row["max_connections"] == 3
    # Without CLIENT LIST the fleet's connections are unknown, not 0.
    assert cache["others"] is None  # unknown, not none
    assert cache["fleet"].pop("budget")["fleet_max_connections"] == 3
    assert cache["fleet"] == {"processes": 1, "connections": None, "max_connections": 3}


# --------------------------------------------------------------- the command itself


def test_own_connections_and_records_left_out(redis_db: RedisDB, tmp_path: Path) -> None:
    # Pools sized with a host other than this machine's name (as a container would).
    host = unique_host()
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": host})
    with (
        override_settings(CACHES=caches, CONNHEALTH_PUBLISH_SECONDS=1),
        cache_worker(redis_db.url, host, log_path=tmp_path / "w.log") as worker,
    ):
        default_cache.set("mine", 1)  # this process publishes a record of its own
        for thread in threading.enumerate():
            if thread.name == "connhealth-publish":
                thread.join(SLOW)
        report, clients = stable_report(redis_db)
        out, err, code = connhealth(no_color=True)

    assert (err, code) == ("", 0)
    assert clients.get((host, PID), 0) >= 1  # the command's connection is there...
    [row] = report["caches"]["default"]["processes"]  # ...and not in the report
    assert row["pid"] == worker.pid
    assert report["caches"]["default"]["fleet"]["processes"] == 1
    assert f" {PID} " not in out


def test_stale_then_gone_after_a_worker_is_killed(redis_db: RedisDB, tmp_path: Path) -> None:
    host = unique_host()
    interval = 0.5  # stale after 1 s, expired after 1.5 s
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, host, interval=interval, log_path=tmp_path / "w.log") as worker,
    ):
        worker.proc.kill()
        worker.proc.wait()
        looks: list[tuple[float, dict[str, Any] | None, dict[str, Any]]] = []

        def gone() -> bool:
            report, code = report_json()
            assert code == 0
            cache = report["caches"]["default"]
            row = rows_by_pid(cache).get(worker.pid)
            looks.append((time.monotonic(), row, cache["fleet"]))
            return row is None

        wait_for(gone, what="the killed worker's record to expire")

    rows = [(row, fleet) for _, row, fleet in looks if row is not None]
    for row, fleet in rows:
        assert row["connections"] == 0, row  # closed with the process
        if row["stale"]:
            assert fleet["processes"] == 0, (row, fleet)  # aged: not in the fleet
        else:
            assert fleet["processes"] == 1, (row, fleet)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(looks)]
    if max(gaps, default=0) < 0.25:  # looked often enough to see its stale half second
        assert any(row["stale"] for row, _ in rows), looks


def test_stale_record_of_a_process_still_holding_connections_counts(
    redis_db: RedisDB, tmp_path: Path
) -> None:
    """A stopped (not dead) process keeps its connections: it is still in the fleet."""
    host = unique_host()
    with (
        override_settings(CACHES=redis_caches(redis_db.url)),
        cache_worker(redis_db.url, host, interval=0.5, log_path=tmp_path / "w.log") as worker,
    ):
        worker.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.2)  # older than two intervals, younger than three
            report, _ = report_json()
        finally:
            worker.proc.send_signal(signal.SIGCONT)
    cache = report["caches"]["default"]
    row = rows_by_pid(cache)[worker.pid]
    if row["stale"]:  # unless the machine was too slow to look in the window
        assert row["connections"] >= 1
    assert cache["fleet"]["processes"] == 1
    assert cache["fleet"]["connections"] == row["connections"]


def test_clean_exit_removes_the_record(redis_db: RedisDB, tmp_path: Path) -> None:
    host = unique_host()
    with cache_worker(redis_db.url, host, log_path=tmp_path / "w.log") as worker:
        key = f"connhealth:pool:{host}:{worker.pid}:default"
        with redis_db.server.client(redis_db.db) as client:
            assert client.exists(key)
    assert worker.proc.returncode == 0, (tmp_path / "w.log").read_text()
    with redis_db.server.client(redis_db.db) as client:
        assert not client.exists(key)
        assert client.zrange("connhealth:pools:default", 0, -1) == []


# --------------------------------------------------------------- as a program


def manage(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m django connhealth ARGS --settings testproject.settings``."""
    return subprocess.run(
        [sys.executable, "-m", "django", "connhealth", *args, "--settings", "testproject.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_program_unreachable_exits_1_without_traceback(tmp_path: Path) -> None:
    location = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    env = child_env(REDIS_URL=location, TESTPROJECT_VAR_DIR=str(tmp_path))
    for args in ((), ("--format", "json")):
        result = manage(env, *args)
        assert result.returncode == 1, result.stderr
        assert result.stderr == "CommandError: failing: default (the report's notes say why)\n"
        assert "unreachable" in result.stdout
        assert SECRET not in result.stdout
    json.loads(result.stdout)


def test_program_watch_until_interrupted(redis_db: RedisDB, tmp_path: Path) -> None:
    env = child_env(REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "django", "connhealth", "--watch", "0.2", "--no-color"]
    cmd += ["--settings", "testproject.settings"]
    with (tmp_path / "out").open("w+") as out, (tmp_path / "err").open("w+") as err:
        child = supervisor.start(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, own_group=False)
        try:
            child.wait_until(
                lambda: (tmp_path / "out").read_text().count("Cache 'default'") >= 3,
                SLOW,
                "three reports",
            )
            child.send(signal.SIGINT)
            code = child.proc.wait(timeout=SLOW)
        finally:
            child.kill()
        text = (tmp_path / "out").read_text()
        error = (tmp_path / "err").read_text()
    assert code == 0, error
    assert error == ""
    assert len(re.findall(r"^\d\d:\d\d:\d\d$", text, re.MULTILINE)) >= 3


# ------------------------------------------------------------------- gunicorn


def gunicorn_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env(
        REDIS_URL=redis_url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PUBLISH_SECONDS="1",
        **extra,
    )


def command_report(redis_url: str, tmp_path: Path) -> dict[str, Any]:
    result = manage(
        child_env(REDIS_URL=redis_url, TESTPROJECT_VAR_DIR=str(tmp_path)), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.gunicorn
def test_gunicorn_workers_under_load(redis_db: RedisDB, tmp_path: Path) -> None:
    env = gunicorn_env(redis_db.url, tmp_path)
    args = ["--preload", "-w", "3", "--threads", "4", "-k", "gthread"]
    host = client_host({})
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=3) as (base, master, workers):
        pools_of_every_worker(base, workers)  # every worker has served cache work
        with Load(f"{base}/work", 16) as load:
            wait_for(lambda: load.requests >= 300, what="300 requests")
            busy = command_report(redis_db.url, tmp_path)
        assert set(load.statuses) == {200}, load.statuses
        # At rest, every count stays put: compare with CLIENT LIST exactly.
        time.sleep(1.5)
        quiet = busy
        deadline = time.monotonic() + SLOW
        while True:
            before = per_process(redis_db)
            quiet = command_report(redis_db.url, tmp_path)
            after = per_process(redis_db)
            if before == after:
                break
            assert time.monotonic() < deadline, (before, after)

    for report in (busy, quiet):
        cache = report["caches"]["default"]
        assert cache["status"] == "pass"
        assert sorted(row["pid"] for row in cache["processes"]) == sorted(workers)
        assert master.pid not in [row["pid"] for row in cache["processes"]]
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()
    cache = busy["caches"]["default"]
    assert cache["pools"][0]["max_connections"] == 3  # the command's own process: 1 thread
    for row in cache["processes"]:
        assert row["host"] == host
        assert row["max_connections"] == 6, row  # 4 threads + headroom 2
        assert row["peak_in_use"] is not None
        assert row["peak_in_use"] > 0, row
        assert 1 <= row["connections"] <= 6, row
        assert row["timeouts"] == 0, row
        assert row["stale"] is False
    assert cache["fleet"]["processes"] == 3
    assert cache["fleet"]["max_connections"] == 18

    cache = quiet["caches"]["default"]
    for row in cache["processes"]:
        assert row["connections"] == after[(host, row["pid"])], (row, after)
    assert cache["fleet"]["connections"] == sum(after[(host, pid)] for pid in workers)


@pytest.mark.gunicorn
def test_idle_gunicorn_workers_stay_in_the_fleet(redis_db: RedisDB, tmp_path: Path) -> None:
    """The heartbeat: 3 x 4 workers, then 5 s without a request, every worker still listed."""
    env = gunicorn_env(redis_db.url, tmp_path)
    args = ["--preload", "-w", "3", "--threads", "4", "-k", "gthread"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=3) as (base, _, workers):
        pools_of_every_worker(base, workers)  # every worker has used its pool
        time.sleep(5)  # five intervals without traffic: a record lives three
        report = command_report(redis_db.url, tmp_path)
    cache = report["caches"]["default"]
    rows = {row["pid"]: row for row in cache["processes"]}
    assert sorted(rows) == sorted(workers)
    for row in rows.values():
        assert row["stale"] is False, row
        assert row["role"] == "web", row
        assert row["age_seconds"] is not None
        assert row["age_seconds"] <= 2, row
        assert row["max_connections"] == 6, row
    assert cache["fleet"]["processes"] == 3
    assert cache["fleet"]["max_connections"] == 18


@pytest.mark.gunicorn
def test_gunicorn_two_hosts_on_one_redis(redis_db: RedisDB, tmp_path: Path) -> None:
    args = ["--preload", "-w", "2", "--threads", "4", "-k", "gthread"]
    env1 = gunicorn_env(redis_db.url, tmp_path / "1", CONNHEALTH_HOST="web-1")
    env2 = gunicorn_env(redis_db.url, tmp_path / "2", CONNHEALTH_HOST="web-2")
    with (
        gunicorn(args, env1, tmp_path / "web-1.log", workers=2) as (base1, _, workers1),
        gunicorn(args, env2, tmp_path / "web-2.log", workers=2) as (base2, _, workers2),
    ):
        pools_of_every_worker(base1, workers1)
        pools_of_every_worker(base2, workers2)
        with Load(f"{base1}/work", 8), Load(f"{base2}/work", 8):
            time.sleep(1.5)
            report = command_report(redis_db.url, tmp_path)

    for name in ("web-1", "web-2"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()
    cache = report["caches"]["default"]
    rows = {(row["host"], row["pid"]): row for row in cache["processes"]}
    assert sorted(rows) == sorted(
        [("web-1", pid) for pid in workers1] + [("web-2", pid) for pid in workers2]
    )
    assert all(row["max_connections"] == 6 and not row["stale"] for row in rows.values())
    fleet = cache["fleet"]
    assert fleet["processes"] == 4
    assert fleet["connections"] == sum(row["connections"] for row in rows.values())
    assert fleet["max_connections"] == 24


@pytest.mark.gunicorn
def test_gunicorn_killed_worker_goes_stale_and_its_replacement_shows(
    redis_db: RedisDB, tmp_path: Path
) -> None:
    """Publishing every second: a killed worker's record is stale after 2 s, gone after 3 s.

    The command runs in-process here (CACHES at the same URL), so it can look
    every tenth of a second and catch the stale second.
    """
    env = gunicorn_env(redis_db.url, tmp_path)
    args = ["--preload", "-w", "2", "--threads", "4", "-k", "gthread"]
    log_path = tmp_path / "gunicorn.log"
    with (
        gunicorn(args, env, log_path, workers=2) as (base, _, workers),
        override_settings(CACHES=redis_caches(redis_db.url)),
    ):
        pools_of_every_worker(base, workers)
        victim = workers[0]

        def replaced() -> list[int]:
            booted = [int(pid) for pid in BOOTED.findall(log_path.read_text())]
            return [pid for pid in booted if pid not in workers]

        reports: list[tuple[float, dict[str, Any]]] = []

        def look() -> dict[int, dict[str, Any]]:
            report, code = report_json()
            assert code == 0, report
            cache = report["caches"]["default"]
            reports.append((time.monotonic(), cache))
            return rows_by_pid(cache)

        with Load(f"{base}/work", 8) as load:
            wait_for(lambda: load.requests >= 100, what="100 requests")
            assert look()[victim]["stale"] is False
            os.kill(victim, signal.SIGKILL)

            def settled() -> bool:
                rows = look()
                new = replaced()
                return victim not in rows and len(new) == 1 and new[0] in rows

            wait_for(settled, what="the killed worker gone, its replacement listed")
            [replacement] = replaced()
        # Requests the killed worker was serving fail; the rest are answered.
        assert load.statuses[200] >= 100, load.statuses

    assert "Traceback" not in log_path.read_text()
    stale_seen = False
    for _, cache in reports:
        rows = rows_by_pid(cache)
        dead = rows.get(victim)
        live = [row for row in rows.values() if row["connections"] or not row["stale"]]
        assert cache["fleet"]["processes"] == len(live)
        if dead is not None and dead["stale"]:
            # Its connections closed with it; aged, it is never counted as live.
            stale_seen = True
            assert dead["connections"] == 0, dead
            assert dead not in live
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(reports)]
    if max(gaps) < 0.5:  # looked often enough to see the second it was stale in
        assert stale_seen, [rows_by_pid(cache).get(victim) for _, cache in reports]
    last = rows_by_pid(reports[-1][1])
    assert sorted(last) == sorted([workers[1], replacement])
    assert last[replacement]["connections"] >= 1
    assert not any(row["stale"] for row in last.values())
    assert reports[-1][1]["fleet"]["processes"] == 2


def test_acl_without_info_still_answers_and_exits_0(start_redis: StartRedis) -> None:
    server = start_redis()
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info"
        )
    limited = f"redis://noinfo:pw@127.0.0.1:{server.port}/0"
    with override_settings(CACHES=redis_caches(limited)):
        out, err, code = connhealth(no_color=True)
        text, json_err, json_code = connhealth("--format", "json")
    assert (err, code) == ("", 0)
    assert (json_err, json_code) == ("", 0)
    cache = json.loads(text)["caches"]["default"]
    assert cache["status"] == "pass"
    assert cache["server"] == {"connected_clients": None, "maxclients": None}
    [note] = cache["notes"]
    assert note.startswith(
        f"redis://noinfo:***@127.0.0.1:{server.port}/0: INFO refused by the server's ACL"
    )
    assert "unreachable" not in out
    assert "maxclients unknown" in out
    assert "pw@" not in out + text


def test_acl_refusing_ping_too_is_a_failure_said_as_a_refusal(start_redis: StartRedis) -> None:
    server = start_redis()
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "noping", "on", ">pw", "~*", "&*", "+@all", "-info", "-ping"
        )
    limited = f"redis://noping:pw@127.0.0.1:{server.port}/0"
    with override_settings(CACHES=redis_caches(limited)):
        out, err, code = connhealth(no_color=True)
    assert code == 1
    assert "failing: default (the report's notes say why)" in err
    assert "refused by the server's ACL" in out
    assert "unreachable" not in out


def test_process_whose_names_were_refused_is_listed_with_a_note(
    start_redis: StartRedis, tmp_path: Path
) -> None:
    server = start_redis()
    with server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "noname", "on", ">pw", "~*", "&*", "+@all", "-client|setname"
        )
    limited = f"redis://noname:pw@127.0.0.1:{server.port}/0"
    host = unique_host()
    with (
        override_settings(CACHES=redis_caches(server.url)),
        cache_worker(limited, host, hold=1, log_path=tmp_path / "w.log") as worker,
    ):
        text, err, code = connhealth("--format", "json")
    assert (err, code) == ("", 0)
    cache = json.loads(text)["caches"]["default"]
    [row] = [row for row in cache["processes"] if row["pid"] == worker.pid]
    assert row["named"] is False
    assert row["connections"] is None  # unknown: CLIENT LIST cannot tell them apart
    assert row["in_use"] >= 1
    assert cache["notes"] == [
        f"CLIENT SETNAME refused by the server's ACL for {host}:{worker.pid}: their "
        f"connections are unnamed, so their counts are unknown."
    ]


def test_alias_whose_pools_cannot_be_built_is_failing_not_a_traceback() -> None:
    caches = sized_caches(
        {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://mymaster/0",
                "OPTIONS": {"SENTINELS": []},
            }
        },
        environ={},
    )
    with override_settings(CACHES=caches):
        report, code = report_json()
    assert code == 1
    alias = report["caches"]["default"]
    assert alias["status"] == "fail"
    assert alias["notes"] == [
        "its pools cannot be built: SENTINELS must be provided as a list of (host, port)."
    ]
    assert [pool["location"] for pool in alias["pools"]] == ["redis://mymaster/0"]


# ------------------------------------------------------------ refused, not unreachable


def test_maxclients_reached_is_said_with_the_fix(start_redis: StartRedis) -> None:
    server = start_redis(extra_args=["--maxclients", "2"])
    held = [socket.create_connection((server.host, server.port)) for _ in range(2)]
    try:
        wait_for(lambda: server_full(server), what="the server full")
        with override_settings(CACHES=redis_caches(server.url)):
            report, code = report_json()
    finally:
        for sock in held:
            sock.close()
    assert code == 1
    [note] = report["caches"]["default"]["notes"]
    assert note.startswith(
        f"redis://{server.host}:{server.port}/0 refused the connection: its maxclients is reached"
    ), note
    assert "Fix: raise maxclients" in note
    assert "unreachable" not in note


def test_maxclients_reached_says_the_budget_last_seen(
    start_redis: StartRedis, tmp_path: Path
) -> None:
    """A report that reached the server, then one turned away (as ``--watch`` refreshes)."""
    server = start_redis(extra_args=["--maxclients", "8"])
    held: list[socket.socket] = []
    try:
        with (
            override_settings(CACHES=redis_caches(server.url)),
            cache_worker(server.url, unique_host(), hold=1, log_path=tmp_path / "w.log"),
        ):
            report, code = report_json()
            assert code == 0
            assert report["caches"]["default"]["fleet"]["max_connections"] == 3
            # the command's own pool let go, then the server filled up to its maxclients
            ConnectionFactory.disconnect_all()
            while not server_full(server):
                held.append(socket.create_connection((server.host, server.port)))
            report, code = report_json()
    finally:
        for sock in held:
            sock.close()
    assert code == 1
    [note] = report["caches"]["default"]["notes"]
    assert "refused the connection: its maxclients is reached" in note
    assert re.search(
        r"or make the fleet's pools fit under it \(at \d\d:\d\d:\d\d UTC, its 1 processes' "
        r"pools could open 3 connections against maxclients 8\): ",
        note,
    ), note


def server_full(server: RedisServer) -> bool:
    """Whether the server refuses one more client (it answers, then closes)."""
    with socket.create_connection((server.host, server.port)) as probe:
        probe.settimeout(2)
        probe.sendall(b"PING\r\n")
        return b"max number of clients" in probe.recv(200)


@pytest.mark.parametrize("given", ["wrong", None], ids=["wrong password", "no password"])
def test_refused_credentials_are_said_with_the_fix(
    start_redis: StartRedis, given: str | None
) -> None:
    server = start_redis(password="r1ght-secret")
    auth = f":{given}@" if given else ""
    url = f"redis://{auth}{server.host}:{server.port}/0"
    with override_settings(CACHES=redis_caches(url)):
        report, code = report_json()
    assert code == 1
    [note] = report["caches"]["default"]["notes"]
    assert " refused the credentials: " in note, note
    assert "Fix: check the password" in note
    assert "unreachable" not in note
    assert "wrong" not in note.replace(" refused", "")  # the password never shows


def test_ghost_connections_of_a_process_are_reported(redis_db: RedisDB) -> None:
    """Connections named for a process that its pool does not hold (as after a partition)."""
    host = unique_host()
    with cache_worker(redis_db.url, host, hold=1) as worker:
        name = client_name(host, worker.pid, "default")
        ghosts = [redis.Redis.from_url(redis_db.url, client_name=name) for _ in range(2)]
        try:
            for ghost in ghosts:
                ghost.ping()  # connected, and named for the worker
            # Ghosts count once older than the worker's record by a second (CLIENT LIST
            # ages are whole seconds): connections opened since are not in it.
            time.sleep(3)
            with override_settings(CACHES=redis_caches(redis_db.url)):
                report, code = report_json()
        finally:
            for ghost in ghosts:
                ghost.close()
    assert code == 0
    [row] = [row for row in report["caches"]["default"]["processes"] if row["pid"] == worker.pid]
    held = row["in_use"] + row["idle"]
    assert row["connections"] >= held + 2
    assert row["ghost_connections"] == 2
    assert f"{host}:{worker.pid} (2)" in " ".join(report["caches"]["default"]["notes"])
