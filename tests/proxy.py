"""A TCP proxy of the tests' own, on loopback: one-way latency per direction, freeze and thaw.

``LatencyProxy`` stands between the clients and a redis-server: it delays each
direction by its own one-way latency (byte order kept) and can ``freeze()``
(forward nothing, keep every connection open) and ``thaw()``. One thread runs
an asyncio loop for every connection; ``stop()`` closes them all and joins it,
pass or fail (the suite runs with ``-W error`` and PYTHONDEVMODE).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

from testproject.supervisor import HOST

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from typing_extensions import Self

#: Seconds the proxy may take to start or stop, or its loop to take a change.
STOP_TIMEOUT = 15.0


class LatencyProxy:
    """A loopback TCP proxy to ``upstream`` with a one-way latency per direction.

    ``up`` delays what the client sends, ``down`` what the server answers (100 ms
    each: 200 ms added to every round trip). One thread runs an asyncio loop for
    every connection; ``stop()`` closes them all and joins it.
    """

    host = HOST

    def __init__(self, upstream: tuple[str, int], *, up: float = 0.0, down: float = 0.0) -> None:
        self.upstream = upstream
        self.up = up
        self.down = down
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._flowing: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LatencyProxy has not been started yet")
        return self._port

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def set_latency(self, one_way: float) -> None:
        """The same latency both ways, from now on (data already in flight keeps its own)."""
        self.up = self.down = one_way

    def freeze(self) -> None:
        """Forward nothing either way from now on; connections stay open, data waits."""
        self._call(lambda flowing: flowing.clear())

    def thaw(self) -> None:
        """Forward again: what waited goes first, in order."""
        self._call(lambda flowing: flowing.set())

    def _call(self, change: Callable[[asyncio.Event], None]) -> None:
        assert self._loop is not None, "not started"
        assert self._flowing is not None
        flowing = self._flowing
        done = threading.Event()

        def apply() -> None:
            change(flowing)
            done.set()

        self._loop.call_soon_threadsafe(apply)
        assert done.wait(STOP_TIMEOUT), "the proxy's loop did not answer"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(STOP_TIMEOUT) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and join the thread. Idempotent."""
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            assert not self._thread.is_alive(), "the proxy's thread did not stop"
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_debug(False)  # dev mode turns it on: its bookkeeping would add latency
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:  # reported by start()
            self._error = error
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._handle, self.host, 0)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for handler in self._handlers:
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

    async def _handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        writers = [client_out]
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
            writers.append(server_out)
            pipes = [
                *self._pipe(client_in, server_out, lambda: self.up),
                *self._pipe(server_in, client_out, lambda: self.down),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()
            self._handlers.discard(task)

    def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Callable[[], float]
    ) -> list[asyncio.Task[None]]:
        """One direction: a task reads and stamps each chunk, another sends it when due."""
        assert self._flowing is not None
        flowing = self._flowing
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while True:
                await flowing.wait()
                data = await reader.read(65536)
                chunks.put_nowait((loop.time() + delay(), data))
                if not data:
                    return

        async def send() -> None:
            while True:
                due, data = await chunks.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                await flowing.wait()
                if not data:  # end of file: pass it on, keep the other direction
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        return [asyncio.create_task(read()), asyncio.create_task(send())]
