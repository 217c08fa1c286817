"""The queue of a sized pool's free slots, counting how callers fare.

A slot is a connection or ``None`` (room to open one). The counters are
updated under the queue's own lock, so they cost the hot path one comparison;
after a put, the queue calls its ``on_due`` once the clock passes ``due_at``.
"""

from __future__ import annotations

import math
import time
from queue import Empty, Full, LifoQueue
from threading import get_ident
from time import monotonic
from typing import TYPE_CHECKING, Any

from django_connhealth.errors import PoolTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable


class CountingQueue(LifoQueue[Any]):
    """The pool's queue of free slots, counting how callers fare.

    A slot is a connection or ``None`` (room to open one), so
    ``maxsize - len(queue)`` is the number of connections in use. ``get`` and
    ``put`` are written out rather than inherited: the pool only ever puts
    without blocking, so the fast paths need the lock but none of
    ``Condition``'s bookkeeping, and the counting costs a comparison.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.created = 0
        self.reconnects = 0
        self.peak_in_use = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.timeouts = 0
        self.leaks = 0  # connections held past CONNHEALTH_LEAK_SECONDS, each counted once
        #: callers blocked in a get; put() wakes one only when there are some
        self.waiting = 0
        #: set by the pool: named in errors, and called after a put from ``due_at`` on
        self.alias = ""
        self.due_at = math.inf
        self.on_due: Callable[[], None] = _nothing

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                raise Full
            self.queue.append(item)
            self.unfinished_tasks += 1
            if self.waiting:
                self.not_empty.notify()
        if time.monotonic() >= self.due_at:  # the hot path's share of the hook: a clock read
            self.on_due()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """A free slot for the app's checkout (redis-py's ``get_connection``).

        A connection handed out notes when and by which thread (a clock read), for
        leak reports; a new one (``None`` here) is noted when the pool makes it.
        """
        with self.mutex:
            if self.queue:
                item = self._take()
                if item is not None:
                    item.connhealth_held = (monotonic(), get_ident())
                return item
        if not block:
            raise Empty
        item = self._wait(timeout, None)
        if item is not None:
            item.connhealth_held = (monotonic(), get_ident())
        return item

    def get_by(self, deadline: float, timeout: float | None) -> Any:
        """A free slot, waiting up to ``timeout`` but never past ``deadline``.

        ``deadline`` is a ``time.monotonic()`` moment of a caller that must answer
        by then (a probe; a publisher that never waits passes "now"). Giving up at
        it raises PoolTimeoutError but does not count as the pool timing out.
        """
        with self.mutex:
            if self.queue:
                return self._take()
        return self._wait(timeout, deadline)

    def _take(self) -> Any:
        """Pop a slot and note the peak; the caller holds ``self.mutex``."""
        item = self.queue.pop()
        in_use = self.maxsize - len(self.queue)
        if in_use > self.peak_in_use:
            self.peak_in_use = in_use
        return item

    def _wait(self, timeout: float | None, deadline: float | None) -> Any:
        started = time.monotonic()
        limited = deadline is not None and (timeout is None or deadline - started < timeout)
        if limited:
            timeout = deadline - started  # type: ignore[operator]
            if timeout <= 0:  # a caller that would rather not wait at all
                raise PoolTimeoutError(self._timeout_message(timeout, limited))
        end = None if timeout is None else started + timeout
        with self.not_empty:
            self.waiting += 1
            try:
                while not self.queue:
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        if not limited:  # a caller giving up early is not the pool timing out
                            self.timeouts += 1
                        raise PoolTimeoutError(self._timeout_message(timeout, limited))
                    self.not_empty.wait(remaining)
                return self._take()
            finally:
                self.waiting -= 1
                self.waits += 1
                self.wait_seconds += time.monotonic() - started

    def _timeout_message(self, timeout: float | None, limited: bool) -> str:
        if limited:
            return f"No free Redis connection for cache {self.alias!r} by the caller's deadline."
        return (
            f"No free Redis connection for cache {self.alias!r} within {timeout} s: "
            f"all {self.maxsize} connections of this process's pool are in use. "
            f"Raise CONNHEALTH_POOL_HEADROOM or max_connections, or find what holds "
            f"connections with `manage.py connhealth`."
        )


def _nothing() -> None:
    """The queue's ``on_due`` until a pool sets its own."""
