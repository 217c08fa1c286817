"""Leak reports: connections checked out for longer than ``CONNHEALTH_LEAK_SECONDS``.

A checkout notes the moment and the thread (one clock read, in the pool). At
each publication, the connections in use are looked at: the longest held is
published as ``held_longest_seconds``, and each one held past the threshold is
logged once, as a warning with the stack of the thread that holds it now
(where the code that forgot it is), and counted in ``leaks``.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from django_connhealth.redispy import every_connection

if TYPE_CHECKING:
    from django_connhealth.pool import SizedConnectionPool

logger = logging.getLogger("django_connhealth")


def in_use(pool: SizedConnectionPool) -> list[Any]:
    """The pool's connections that are checked out now."""
    with pool.slots.mutex:
        free = {id(slot) for slot in pool.slots.queue if slot is not None}
        return [connection for connection in every_connection(pool) if id(connection) not in free]


def check(pool: SizedConnectionPool, threshold: float) -> float:
    """Report the connections held past ``threshold`` seconds (0: none); the longest hold."""
    now = time.monotonic()
    longest = 0.0
    for connection in in_use(pool):
        held = getattr(connection, "connhealth_held", None)
        if held is None:
            continue  # checked out by the app's own probes and publishing, never held long
        since, thread = held
        longest = max(longest, now - since)
        if (
            threshold
            and now - since > threshold
            and getattr(connection, "connhealth_leak", None) != held
        ):
            connection.connhealth_leak = held
            with pool.slots.mutex:
                pool.slots.leaks += 1
            frame = sys._current_frames().get(thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(gone)\n"
            logger.warning(
                "connhealth: a connection of cache %r has been checked out for %.1f s, more "
                "than CONNHEALTH_LEAK_SECONDS=%g: is it ever given back? The thread holding "
                "it (%s) is at:\n%s",
                pool.alias,
                now - since,
                threshold,
                thread,
                stack.rstrip(),
            )
    return round(longest, 3)
