"""The heartbeat: a process publishes its pools' figures every interval, busy or idle.

A release publishes a pool's figures when they are due (the pools' due hook),
but an idle pool sees no release, and its record would expire: the fleet view
would lose the process and its share of the connections it may open. So the
first publication in a process starts one daemon thread here, which wakes a
few times per interval and runs the due hook of every pool this process has
used whose figures are due. The hook never waits for a connection and opens
none beyond the pool's size; the thread holds no lock of the pools.
"""

from __future__ import annotations

import logging
import os
import threading

from django_connhealth import defaults
from django_connhealth.pool import registry

logger = logging.getLogger("django_connhealth")
#: Set in the heartbeat's own thread: stop() forgets the thread before its beat ends.
_beating = threading.local()


class Heartbeat:
    """This process's heartbeat thread, started once per process (a forked child starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ensure_running(self, interval: float) -> None:
        """Start the thread in this process unless it runs; ``interval``: the publish interval."""
        if self._pid == os.getpid():  # the hot path: one comparison
            return
        if getattr(_beating, "active", False):
            return  # a beat (maybe of a heartbeat being stopped) never starts another
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stopping = threading.Event()
            thread = threading.Thread(
                target=self._beat,
                args=(self._stopping, interval),
                name="connhealth-heartbeat",
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (interpreter shutting down)
                return
            self._thread, self._pid = thread, os.getpid()

    @staticmethod
    def _beat(stopping: threading.Event, interval: float) -> None:
        _beating.active = True
        tick = min(max(interval / defaults.HEARTBEAT_TICKS, defaults.HEARTBEAT_MIN_TICK), 1.0)
        pid = os.getpid()
        while not stopping.wait(tick):
            for pool in registry.pools():
                if stopping.is_set():
                    return
                if pool.pid != pid:  # not used in this process (a parent's pool, yet)
                    continue
                try:
                    pool.run_due_hook()
                except Exception:  # one pool's trouble must not stop the others' beat
                    logger.warning("connhealth: heartbeat of %r failed", pool.alias, exc_info=True)

    @property
    def running(self) -> bool:
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def stop(self) -> None:
        """Stop the thread and wait for it (tests, a settings change); the next use starts it."""
        with self._lock:
            thread, self._thread, self._pid = self._thread, None, 0
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def after_fork(self) -> None:
        """In a forked child, which has no such thread: the lock is made anew."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread, self._pid = None, 0


heartbeat = Heartbeat()
