"""The fleet report of ``manage.py connhealth``: server side plus published figures.

Two sources, combined per process: ``CLIENT LIST`` grouped by the names sized
pools give their connections (what is really open), and the records processes
publish (what their pools see: in use, waits, timeouts). Pure data out; the
command only formats it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError, ResponseError

from django_connhealth import defaults
from django_connhealth.adapters.registry import sized_aliases
from django_connhealth.budget import DEFAULT_SURGE_PERCENT, budget, budget_warning, budgets
from django_connhealth.clients import read_clients
from django_connhealth.conf import client_host
from django_connhealth.publish import index_key
from django_connhealth.redact import scrub
from django_connhealth.refusals import failure, refused_by_acl
from django_connhealth.sentinel import SizedSentinelPool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis import Redis

    from django_connhealth.adapters.base import Adapter
    from django_connhealth.sizing import Concurrency

#: The order the table groups processes in.
ROLES = {"web": 0, "celery": 1, "other": 2}
FIGURES = (
    "in_use",
    "idle",
    "peak_in_use",
    "waits",
    "wait_seconds",
    "timeouts",
    "max_connections",
    "leaks",
    "held_longest_seconds",
)


@dataclass(frozen=True)
class Me:
    """The reporting process, left out of ``processes``."""

    host: str
    pid: int

    @classmethod
    def here(cls) -> Me:
        return cls(client_host(os.environ), os.getpid())


def _answers_ping(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False


def server_figures(client: Redis) -> dict[str, Any]:
    info = client.info("clients")
    return {
        "connected_clients": info.get("connected_clients"),
        "maxclients": info.get("maxclients"),
    }


def published_records(client: Redis, pool_alias: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The live records of ``pool_alias``, each with its age by the server's clock."""
    keys = [
        k.decode() if isinstance(k, bytes) else str(k)
        for k in client.zrange(index_key(pool_alias), 0, -1)
    ]
    if not keys:
        return {}
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for value, pttl in zip(replies[::2], replies[1::2], strict=True):
        if value is None:
            continue
        try:
            record = json.loads(value)
            process = (str(record["host"]), int(record["pid"]))
            ttl = float(record["ttl"])
            interval = float(record["interval"])
        except (ValueError, KeyError, TypeError):
            continue  # not ours, or from an incompatible version
        # Age from the key's remaining TTL: the server's clock, not the hosts'.
        age = max(0.0, ttl - pttl / 1000) if isinstance(pttl, int) and pttl >= 0 else None
        record["age_seconds"] = None if age is None else round(age, 1)
        record["stale"] = age is not None and age > defaults.STALE_INTERVALS * interval
        records[process] = record
    return records


def processes(
    connections: Mapping[tuple[str, int], int] | None,
    records: Mapping[tuple[str, int], Mapping[str, Any]],
    me: Me,
    ages: Mapping[tuple[str, int], list[int]] | None = None,
) -> list[dict[str, Any]]:
    """One row per process: its connections and, where it published them, its figures."""
    rows = []
    for host, pid in set(connections or {}) | set(records):
        if (host, pid) == (me.host, me.pid):
            continue
        record = records.get((host, pid), {})
        # A process whose server refused its connections' names holds connections
        # that CLIENT LIST cannot tell from others': their count is unknown.
        unnamed = record.get("named") is False
        row: dict[str, Any] = {
            "role": record.get("role"),  # unknown until the process publishes
            "host": host,
            "pid": pid,
            "connections": None
            if connections is None or unnamed
            else connections.get((host, pid), 0),
        }
        row.update({figure: record.get(figure) for figure in FIGURES})
        row["age_seconds"] = record.get("age_seconds")
        row["stale"] = bool(record.get("stale"))
        row["named"] = not unnamed
        # connections on the server, and no record: a killed process, or one never published
        row["orphaned"] = not record and bool(row["connections"])
        row["ghost_connections"] = ghosts(row, None if ages is None else ages.get((host, pid), []))
        rows.append(row)
    # Grouped by role (web, celery, other, then unknown), each by host and pid.
    return sorted(rows, key=lambda row: (ROLES.get(row["role"], len(ROLES)), host_pid(row)))


def ghosts(row: Mapping[str, Any], ages: list[int] | None = None) -> int | None:
    """Connections the server holds named for a process beyond those its pool holds.

    A connection the client gave up on (a partition, a client killed mid-reply)
    stays open on the server until the server's ``timeout`` or ``tcp-keepalive``
    ends it. Compared with the pool's last publication, so only connections
    older than that record count (``ages``, whole seconds from ``CLIENT LIST``:
    a second more than the record's age); unknown without a fresh record.
    """
    in_use, idle, count = row.get("in_use"), row.get("idle"), row.get("connections")
    record_age = row.get("age_seconds")
    if row.get("stale") or not (
        isinstance(in_use, int) and isinstance(idle, int) and isinstance(count, int)
    ):
        return None
    if ages is not None:
        if not isinstance(record_age, (int, float)):
            return None
        count = sum(1 for age in ages if age >= record_age + 1)
    return max(0, count - (in_use + idle))


def ghost_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One note for the processes with ghost connections, and what ends them."""
    haunted = [
        f"{r['host']}:{r['pid']} ({r['ghost_connections']})" for r in rows if r["ghost_connections"]
    ]
    if not haunted:
        return []
    return [
        f"connections open on the server that their processes' pools no longer hold: "
        f"{', '.join(haunted)}; the server closes them at its idle `timeout` or when "
        f"`tcp-keepalive` finds the peer gone (set both)."
    ]


def host_pid(row: Mapping[str, Any]) -> tuple[str, int]:
    return (row["host"], row["pid"])


def unnamed_notes(
    rows: list[dict[str, Any]], records: Mapping[tuple[str, int], Mapping[str, Any]]
) -> list[str]:
    """Notes naming the processes whose connections cannot be told apart, by reason."""
    refused: list[str] = []
    own: list[str] = []
    for row in rows:
        if not row["named"]:
            process = f"{row['host']}:{row['pid']}"
            record = records.get((row["host"], row["pid"]), {})
            (refused if record.get("name_refused") else own).append(process)
    notes = []
    if refused:
        notes.append(
            f"CLIENT SETNAME refused by the server's ACL for {', '.join(refused)}: their "
            f"connections are unnamed, so their counts are unknown."
        )
    if own:
        notes.append(
            f"{', '.join(own)} name their connections themselves (client_name): "
            f"their counts are unknown."
        )
    return notes


def fleet(
    rows: list[dict[str, Any]],
    server: Mapping[str, Any],
    surge_percent: float = DEFAULT_SURGE_PERCENT,
    others: int = 0,
) -> dict[str, Any]:
    # A process holding connections is live, whatever the age of its record.
    live = [row for row in rows if row["connections"] or not row["stale"]]
    counts = [row["connections"] for row in live]
    sizes = [row["max_connections"] or 0 for row in live]
    summary: dict[str, Any] = {
        "processes": len(live),
        # unknown (None) when the server refused CLIENT LIST, or a process's
        # connections are not named
        "connections": None if None in counts else sum(counts),
        "max_connections": sum(sizes),
        "budget": budget(sizes, server, surge_percent, others),
    }
    warning = budget_warning(summary["budget"])
    if warning is not None:
        summary["warning"] = warning
    return summary


def alias_report(
    alias: str,
    adapter: Adapter,
    config: Mapping[str, Any],
    me: Me,
    surge_percent: float = DEFAULT_SURGE_PERCENT,
) -> dict[str, Any]:
    """The report of one sized alias: its pools, its server, its fleet and the others."""
    pool_alias = adapter.pool_name(alias, config)
    # This process's connections are named with the host its pools were sized with.
    me = Me(adapter.pool_host(config) or me.host, me.pid)
    report: dict[str, Any] = {
        "status": "pass",
        "pools": [],
        "server": None,
        "processes": [],
        "fleet": None,  # unknown until the server answers
        "others": None,  # unknown until CLIENT LIST answers
        "notes": [],
    }
    configs = adapter.pool_configs(config)
    try:
        pools = adapter.alias_pools(alias, config)
    except (ImproperlyConfigured, ValueError, TypeError) as exc:  # as any use would
        report["status"] = "fail"
        report["pools"] = [pool_config.as_dict() for pool_config in configs]
        report["notes"].append(f"its pools cannot be built: {exc}")
        return report
    for index, (pool_config, live) in enumerate(zip(configs, pools, strict=True)):
        entry = pool_config.as_dict()
        report["pools"].append(entry)
        client = live.client
        sentinel = live.pool if isinstance(live.pool, SizedSentinelPool) else None
        if sentinel is not None:
            entry.update(sentinel.describe())  # its service and role, whatever comes next
        try:
            if sentinel is not None:
                sentinel.named_master()  # the sentinels may name none, or a new one
                entry.update(sentinel.describe())
            server = server_figures(client)
        except (RedisError, OSError) as exc:
            refused = isinstance(exc, ResponseError) and refused_by_acl(exc)
            error = scrub(f"{type(exc).__name__}: {exc}", live.secrets)
            if not (refused and _answers_ping(client)):
                report["status"] = "fail"
                entry["error"] = error
                said = failure(exc, error, budgets.known(entry["location"]))
                report["notes"].append(f"{entry['location']} {said}")
                continue
            server = {"connected_clients": None, "maxclients": None}
            report["notes"].append(
                f"{entry['location']}: INFO refused by the server's ACL ({error}); "
                f"connected_clients and maxclients unknown."
            )
        if len(configs) > 1:
            entry["server"] = server
        if index:
            continue
        report["server"] = server
        ages: dict[tuple[str, int], list[int]] | None = None
        others = 0
        try:
            clients = read_clients(client, pool_alias, (me.host, me.pid))
            ages, report["others"] = clients.ours, clients.others
            others = clients.held_by_others
        except (RedisError, OSError) as exc:
            if isinstance(exc, ResponseError) and refused_by_acl(exc):
                said = "refused by the server's ACL"
            else:  # a timeout on a long list, a dropped connection
                said = scrub(f"failed ({type(exc).__name__}: {exc})", live.secrets)
            report["notes"].append(
                f"CLIENT LIST {said}: connection counts unknown; showing published figures."
            )
        try:
            records = published_records(client, pool_alias)
        except (RedisError, OSError) as exc:
            records = {}
            report["notes"].append(
                scrub(f"published figures unreadable: {type(exc).__name__}: {exc}", live.secrets)
            )
        connections = None if ages is None else {key: len(ages[key]) for key in ages}
        report["processes"] = processes(connections, records, me, ages)
        report["notes"] += unnamed_notes(report["processes"], records)
        report["notes"] += ghost_notes(report["processes"])
        report["fleet"] = fleet(report["processes"], server, surge_percent, others)
        budgets.remember(entry["location"], report["fleet"], server)
    return report


def full_report(
    concurrency: Concurrency,
    aliases: list[str] | None = None,
    surge_percent: float = DEFAULT_SURGE_PERCENT,
) -> dict[str, Any]:
    me = Me.here()
    sized = sized_aliases(getattr(settings, "CACHES", {}))
    return {
        "concurrency": concurrency.as_dict(),
        "caches": {
            alias: alias_report(alias, adapter, config, me, surge_percent)
            for alias, (adapter, config) in sized.items()
            if aliases is None or alias in aliases
        },
    }
