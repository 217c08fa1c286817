"""The fleet's connection budget on a server: will the next deploy fit under maxclients?

The fleet may open the sum of every live process's ``max_connections``. A
rolling deploy runs a surge of new processes beside the old ones (Kubernetes'
``maxSurge``, 25 % by default), each with full pools: that sum, the surge
added (rounded up, as Kubernetes rounds a surge), and the connections that no
sized pool opened must fit under ``maxclients``. Pure arithmetic, plus the last
budget seen per server, for when a full server turns the command away.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Kubernetes' default ``maxSurge`` for a rolling update.
DEFAULT_SURGE_PERCENT = 25.0
MAX_SURGE_PERCENT = 1000.0


def budget(
    max_connections: Sequence[int],
    server: Mapping[str, Any],
    surge_percent: float,
    others: int,
) -> dict[str, Any]:
    """The budget of processes with pools of ``max_connections`` each (SPEC ``fleet.budget``).

    ``others``: connections on the server this fleet's pools did not open (other
    clients, other aliases' pools); they hold part of ``maxclients`` too. Figures
    that need ``maxclients`` are ``None`` without it.
    """
    fleet_max = sum(max_connections)
    needed = math.ceil(fleet_max * (100 + surge_percent) / 100 - 1e-9)
    maxclients = server.get("maxclients")
    spare = fit = None
    if isinstance(maxclients, int):
        spare = maxclients - needed - others
        largest = max(max_connections, default=0)
        fit = max(0, spare) // largest if largest else None
    return {
        "maxclients": maxclients,
        "connected_clients": server.get("connected_clients"),
        "fleet_max_connections": fleet_max,
        "surge_percent": surge_percent,
        "needed_with_surge": needed,
        "spare": spare,
        "processes_that_fit": fit,
    }


def budget_warning(summary: Mapping[str, Any]) -> str | None:
    """What does not fit under ``maxclients``, if anything."""
    maxclients = summary["maxclients"]
    if not isinstance(maxclients, int):
        return None
    fleet_max = summary["fleet_max_connections"]
    if fleet_max > maxclients:
        return (
            f"the fleet's pools may open {fleet_max} connections, more than maxclients {maxclients}"
        )
    if summary["needed_with_surge"] > maxclients:
        return (
            f"a rolling deploy with a {summary['surge_percent']:g}% surge may open "
            f"{summary['needed_with_surge']} connections, more than maxclients {maxclients}"
        )
    if summary["spare"] < 0:
        held = maxclients - summary["needed_with_surge"] - summary["spare"]
        return (
            f"a rolling deploy with a {summary['surge_percent']:g}% surge may open "
            f"{summary['needed_with_surge']} connections, and {held} other connections are "
            f"open on the server: more than maxclients {maxclients}"
        )
    return None


class Budgets:
    """The last fleet figures seen per server location (redacted), in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int, int, Any]] = {}

    def remember(self, location: str, fleet: Mapping[str, Any], server: Mapping[str, Any]) -> None:
        with self._lock:
            self._seen[location] = (
                time.time(),
                fleet["max_connections"],
                fleet["processes"],
                server.get("maxclients"),
            )

    def known(self, location: str) -> str:
        """The budget last seen on ``location``, as words for an error text; "" if none."""
        with self._lock:
            seen = self._seen.get(location)
        if seen is None:
            return ""
        at, budget, processes, maxclients = seen
        clock = time.strftime("%H:%M:%S UTC", time.gmtime(at))
        against = f" against maxclients {maxclients}" if isinstance(maxclients, int) else ""
        return (
            f" (at {clock}, its {processes} processes' pools could open {budget} "
            f"connections{against})"
        )

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


budgets = Budgets()
