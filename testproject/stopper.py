"""Ctrl-C, SIGTERM and SIGHUP for a program that supervises children (the demo, the benchmarks).

``Stopper`` turns those signals into ``Stopped`` in the main thread, holds them
while a child is being started, and ignores them once cleanup has begun.
``foreground()`` makes the program the terminal's foreground job, so that Ctrl-C
reaches it and its children but not the ``make`` and ``tox`` that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """Raised in the main thread by a stop signal (like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Stopper:
    """Turns SIGINT, SIGTERM and SIGHUP into ``Stopped``, except where that would leak.

    Inside ``deferred()`` (while a child is being started) a signal is held
    until the block ends; once ``stopping()`` is called (cleanup) it is ignored,
    so a second Ctrl-C cannot cut the cleanup short.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._stopping = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self.signum = signum
        if not self._deferring:
            raise Stopped(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signum is not None:
            raise Stopped(self.signum)

    def stopping(self) -> None:
        self._stopping = True


@contextlib.contextmanager
def foreground() -> Iterator[bool]:
    """Be the terminal's foreground job (a process group of our own) inside the block.

    A terminal sends Ctrl-C to every process of its foreground job. Run as
    ``make demo``, that job holds make and tox as well: make dies of the
    signal, and tox reports the environment as interrupted, however cleanly the
    demo stops. In a group of our own that the terminal sends Ctrl-C to, only
    this process and the children it starts get the signal; make and tox see
    it exit 0. Yields whether it took the terminal: not without one, nor in
    the background. The terminal goes back to the job it came from at the end.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield False
        return
    try:
        job = os.getpgrp()
        if os.tcgetpgrp(tty) != job or job == os.getpid():
            yield False  # in the background, or already a job of its own
            return
        os.setpgid(0, 0)
        _give_terminal(tty, os.getpgrp())
        # Ctrl-Z would stop this job while make waits in the background for it.
        previous = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
        try:
            yield True
        finally:
            signal.signal(signal.SIGTSTP, previous)
            _give_terminal(tty, job)
    finally:
        os.close(tty)


def _give_terminal(tty: int, pgrp: int) -> None:
    """Make ``pgrp`` the foreground job of ``tty``; SIGTTOU held, as shells do."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        with contextlib.suppress(OSError):  # the job has gone (make was killed)
            os.tcsetpgrp(tty, pgrp)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
