"""Readiness answers: the probes' results, collected by their deadline.

A synchronous probe waits on the ping futures; an async one awaits them, so
the event loop (the app's own or the probe listener's) is never blocked.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import wait as futures_wait
from typing import TYPE_CHECKING

from django_connhealth.probes import prober

if TYPE_CHECKING:
    from django_connhealth.probes import Result


class Readiness:
    """Readiness results, optionally reused for ``CONNHEALTH_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, int, list[Result]] | None = None

    def _fresh(self, ttl: float) -> list[Result] | None:
        with self._lock:
            cached = self._cached
        if ttl and cached and cached[1] == os.getpid() and time.monotonic() - cached[0] < ttl:
            return cached[2]
        return None

    def _store(self, ttl: float, results: list[Result]) -> list[Result]:
        if ttl:
            with self._lock:
                self._cached = (time.monotonic(), os.getpid(), results)
        return results

    def clear(self) -> None:
        """Forget the reused results."""
        with self._lock:
            self._cached = None

    def after_fork(self) -> None:
        """:meth:`clear` in a forked child, where a parent's thread may have held the lock."""
        self._lock = threading.Lock()
        self._cached = None

    def results(self, timeout: float, ttl: float) -> list[Result]:
        """Ping every pool, answering within ``timeout`` seconds."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = prober.start(timeout, inline=True)
        waiting = [future for _, future in pending if not future.done()]
        if waiting:  # none after a ping in this thread: the common probe
            futures_wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, prober.collect(timeout, pending))

    async def aresults(self, timeout: float, ttl: float) -> list[Result]:
        """:meth:`results` for an event loop: waiting never blocks the loop."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = prober.start(timeout)
        if pending:
            waiting = [asyncio.wrap_future(future) for _, future in pending]
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, prober.collect(timeout, pending))


readiness = Readiness()
