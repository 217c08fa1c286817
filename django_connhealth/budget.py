"""The fleet's connection budget on each server, as the command last saw it.

When a server turns the command away because its ``maxclients`` is reached,
the last figures this process saw (an earlier refresh of ``--watch``) say
what the fleet may open, when nothing can be read from the server itself.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


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
