"""What the load and the probes of the fault suite see: samplers, and wrk in the background.

``Sampler`` GETs a URL every so often (a probe: on a fresh connection each
time) or back to back (the error timeline of ``/work``: on a connection it
keeps) and records when, what and how long. ``Wrk`` runs wrk (testproject.wrk)
until told to stop. Nothing here imports pytest: the benchmarks use it too.
"""

from __future__ import annotations

import http.client
import math
import shutil
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from testproject import wrk
from testproject.supervisor import HOST, start

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from typing_extensions import Self

#: Seconds a sampler or wrk may take to stop.
STOP_TIMEOUT = 15.0
#: wrk's connections on ``/work`` and its threads.
CONNECTIONS, WRK_THREADS = 64, 2
#: Seconds between two probes, and the longest a probe's answer is waited for.
PROBE_INTERVAL, PROBE_TIMEOUT = 0.1, 5.0


class Sample(NamedTuple):
    """One GET: when it started (``time.monotonic()``), its status (or error), its seconds."""

    at: float
    status: int | str
    seconds: float

    @property
    def end(self) -> float:
        return self.at + self.seconds


def failed(samples: Iterable[Sample]) -> list[Sample]:
    """The samples not answered 2xx."""
    return [s for s in samples if not (isinstance(s.status, int) and 200 <= s.status < 300)]


def percentile(values: Iterable[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.99: p99) of ``values``; NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Sampler:
    """``clients`` threads, each GETting ``url`` every ``interval`` s (0: back to back).

    ``fresh``: a new connection for every GET (as a kubelet probes), else one
    connection per thread, kept (opened again only after an error), so the
    thread's requests stay with one server worker. ``samples`` holds them all.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: float = PROBE_INTERVAL,
        timeout: float = PROBE_TIMEOUT,
        clients: int = 1,
        fresh: bool = True,
    ) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or HOST, parts.port or 80)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.interval, self.timeout, self.clients, self.fresh = interval, timeout, clients, fresh
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return sorted(self._samples)

    def between(self, start: float, end: float = math.inf) -> list[Sample]:
        """The samples that started at ``start`` or later, and before ``end``."""
        return [sample for sample in self.samples if start <= sample.at < end]

    def _get(self, connection: http.client.HTTPConnection) -> Sample:
        started = time.monotonic()
        status: int | str
        try:
            headers = {"Connection": "close"} if self.fresh else {}
            connection.request("GET", self.path, headers=headers)
            with connection.getresponse() as response:
                response.read()
                status = response.status
        except TimeoutError:
            status = "timeout"
        except (OSError, http.client.HTTPException) as error:
            status = type(error).__name__
        return Sample(started, status, time.monotonic() - started)

    def _run(self, offset: float) -> None:
        due = time.monotonic() + offset
        connection: http.client.HTTPConnection | None = None
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                if connection is None:
                    connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
                sample = self._get(connection)
                if self.fresh or not isinstance(sample.status, int):
                    connection.close()
                    connection = None
                with self._lock:
                    self._samples.append(sample)
                due = max(due + self.interval, time.monotonic()) if self.interval else 0.0
        finally:
            if connection is not None:
                connection.close()

    def __enter__(self) -> Self:
        for number in range(self.clients):
            offset = self.interval * number / self.clients
            thread = threading.Thread(
                target=self._run, args=(offset,), name=f"sampler-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + STOP_TIMEOUT)
        assert not any(thread.is_alive() for thread in self._threads), "a sampler hung"


class Wrk:
    """wrk on ``url`` from a subprocess until ``result()`` stops it (or the block ends).

    ``die_with_parent``: SIGTERM when this process dies (the benchmarks'; a child
    started so forks, which warns in a process with threads from Python 3.12).
    """

    def __init__(
        self,
        url: str,
        connections: int = CONNECTIONS,
        threads: int = WRK_THREADS,
        *,
        die_with_parent: bool = False,
    ) -> None:
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed: apt-get install wrk (.ci/run does)")
        # Long enough for any run: result() ends it with SIGINT, as Ctrl-C does.
        cmd = wrk.command(url, connections, 600, threads)
        self.child = start(
            cmd,
            name="wrk",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            die_with_parent=die_with_parent,
        )

    def result(self) -> dict[str, float]:
        """SIGINT wrk, which then prints what it counted; its figures (testproject.wrk)."""
        self.child.send(signal.SIGINT)
        out, err = self.child.proc.communicate(timeout=STOP_TIMEOUT)
        try:
            return wrk.parse(out)
        except ValueError as error:
            raise AssertionError(f"{error} (stderr {err[-500:]!r})") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.child.stop(STOP_TIMEOUT)
        for pipe in (self.child.proc.stdout, self.child.proc.stderr):
            if pipe is not None:
                pipe.close()
