"""The liveness watchdog: a process whose request threads are all stuck is not alive.

Probes answered off the request queue (the probe listener) would otherwise
pass for a deadlocked process. The watchdog counts the requests this process
has started and finished (Django's ``request_started`` and
``request_finished``): when every request thread is busy and none has
finished for ``CONNHEALTH_WATCHDOG_SECONDS``, requests are queueing that no
thread will take, and liveness fails. A process that is merely busy finishes
requests, and passes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_connhealth import defaults


@dataclass(frozen=True)
class Stall:
    """Every request thread busy, and no request finished, for ``seconds``."""

    in_flight: int
    threads: int
    seconds: float

    def describe(self) -> str:
        return (
            f"all {self.threads} request threads busy ({self.in_flight} requests in flight) "
            f"and no request finished for {self.seconds:.1f} s"
        )


class Watchdog:
    """Requests in flight in this process, and when one last finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._in_flight = 0
        # the later of the last finish and the moment every thread became busy
        self._progress = time.monotonic()
        self._threads: int | None = None

    def _this_process(self) -> None:
        """Forget a parent's requests; the caller holds the lock."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._in_flight = 0
            self._progress = time.monotonic()
            self._threads = None

    def threads(self) -> int:
        """Requests this process serves at once, as the pools are sized for it."""
        if self._threads is None:
            from django_connhealth.sizing import process_concurrency

            try:
                self._threads = process_concurrency(os.environ, sys.argv).threads
            except ImproperlyConfigured:  # the system checks report it; never a false stall
                self._threads = defaults.UNBOUNDED
        return self._threads

    def request_started(self, **kwargs: Any) -> None:
        threads = self.threads()
        with self._lock:
            self._this_process()
            self._in_flight += 1
            if self._in_flight == threads:
                self._progress = time.monotonic()

    def request_finished(self, **kwargs: Any) -> None:
        with self._lock:
            self._this_process()
            self._in_flight = max(0, self._in_flight - 1)
            self._progress = time.monotonic()

    def stall(self, limit: float) -> Stall | None:
        """The stall under way, when it has lasted longer than ``limit`` seconds (0: never)."""
        threads = self.threads()
        with self._lock:
            self._this_process()
            in_flight, progress = self._in_flight, self._progress
        stalled = time.monotonic() - progress
        if limit and in_flight >= threads and stalled > limit:
            return Stall(in_flight, threads, stalled)
        return None

    def reset(self) -> None:
        """Forget every request (tests; a forked child does so by itself)."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._in_flight = 0
        self._progress = time.monotonic()
        self._threads = None


watchdog = Watchdog()
