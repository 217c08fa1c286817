"""The server's connections (``CLIENT LIST``), sorted out: this app's processes, and the others.

``CLIENT LIST`` is O(clients) on the server's main thread, so it is read once
per server and report. Connections named by a sized pool
(``connhealth:<host>:<pid>:<alias>``) belong to processes; every other one,
named or not, is a connection no sized pool opened: a Celery broker, a
channel layer, RQ, a script, a leaked client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django_connhealth.naming import parse_client_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis import Redis


@dataclass
class Clients:
    """The connections of one server, as the report needs them."""

    #: The ages (seconds) of the connections named for the alias, per (host, pid).
    ours: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: Connections no sized pool opened, by client name (``None``: unnamed).
    others: list[dict[str, Any]] = field(default_factory=list)
    #: Connections of sized pools of other aliases (or other dbs) on the same server.
    sized_elsewhere: int = 0

    @property
    def others_connections(self) -> int:
        return sum(group["connections"] for group in self.others)

    @property
    def held_by_others(self) -> int:
        """What the server holds that this alias's fleet cannot have: every other connection."""
        return self.others_connections + self.sized_elsewhere


def sort_clients(
    entries: Iterable[Mapping[str, Any]], db: str, pool_alias: str, me: tuple[str, int]
) -> Clients:
    """``CLIENT LIST`` entries: ours for ``pool_alias`` on ``db`` (``me`` left out), and others.

    Only this pool's db counts as ours, where the records are: another project
    on another db of the same server may name its pools the same. Others are
    counted on every db, as ``maxclients`` is.
    """
    clients = Clients()
    groups: dict[str | None, dict[str, Any]] = {}
    for entry in entries:
        raw_name = str(entry.get("name") or "")
        name = parse_client_name(raw_name)
        if name is not None:
            if (name.host, name.pid) == me:
                continue
            if str(entry.get("db")) == db and name.alias == pool_alias:
                ages = clients.ours.setdefault((name.host, name.pid), [])
                ages.append(int(entry.get("age") or 0))
            else:  # another alias's sized pools on this server, or another db's
                clients.sized_elsewhere += 1
            continue
        key = raw_name or None
        group = groups.setdefault(key, {"name": key, "connections": 0, "idle_seconds_max": 0})
        group["connections"] += 1
        group["idle_seconds_max"] = max(group["idle_seconds_max"], int(entry.get("idle") or 0))
    clients.others = sorted(
        groups.values(),
        key=lambda group: (-group["connections"], group["name"] is None, group["name"] or ""),
    )
    return clients


def read_clients(client: Redis, pool_alias: str, me: tuple[str, int]) -> Clients:
    """:func:`sort_clients` of the server ``client`` talks to; raises if refused."""
    db = str(client.connection_pool.connection_kwargs.get("db") or 0)
    return sort_clients(client.client_list(), db, pool_alias, me)
