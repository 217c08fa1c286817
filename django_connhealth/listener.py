"""The probe listener: health answers from a thread of their own, never behind requests.

With ``CONNHEALTH_PROBE_PORT`` set, each worker process runs one asyncio loop
in a daemon thread, on a socket bound with ``SO_REUSEPORT``: every worker binds
the same port, and the kernel spreads probes over the workers alive. A probe
never waits for a request thread, so a saturated app still answers it in
time; the watchdog fails liveness when the request threads are stuck for good.
One thread serves any number of probes at once: readiness probes await the
shared ping's future. It speaks just enough HTTP/1.1 for probes and scrapers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from typing import Any
from urllib.parse import parse_qs

from django.core.exceptions import ImproperlyConfigured

from django_connhealth import defaults
from django_connhealth.answers import (
    ALLOWED,
    CONTENT_TYPE,
    bearer_matches,
    health_document,
    http_status,
    liveness,
    misconfigured,
    readiness_settings,
)
from django_connhealth.readiness import readiness
from django_connhealth.scrape import metrics_answer

logger = logging.getLogger("django_connhealth")

#: The listener's own paths, beside the health URLs mounted in the URLconf.
PATHS = {
    "/live": "live",
    "/ready": "ready",
    "/health": "ready",
    "/": "ready",
    "/metrics": "metrics",
}
REASONS = {
    200: "OK",
    403: "Forbidden",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``(host, port)`` that the other workers may bind too."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ImproperlyConfigured(
            f"CONNHEALTH_PROBE_HOST={host!r} is not an address ({exc.strerror}): "
            "set it to an IP address or host name to bind, or unset it (all addresses)."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(defaults.PROBE_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ImproperlyConfigured(
            f"CONNHEALTH_PROBE_PORT={port} cannot be bound on {host!r} ({exc.strerror}): "
            "choose a port no other program listens on (every worker shares it)."
        ) from None
    return sock


def head_of(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def answer(kind: str, authorization: str) -> dict[str, Any]:
    """The health document for ``kind`` (``live`` or ``ready``)."""
    detail = False
    try:
        if kind == "live":
            return liveness(lambda: bearer_matches(authorization))
        detail = bearer_matches(authorization)
        timeout, ttl = readiness_settings()
    except ImproperlyConfigured as exc:
        return misconfigured(exc, detail=detail)
    return health_document(await readiness.aresults(timeout, ttl), detail=detail)


async def scrape(request: Request) -> tuple[int, bytes, str]:
    """A scrape of the metrics: the reads of Redis run off this loop."""
    try:
        allowed = bearer_matches(request.headers.get("authorization", ""))
    except ImproperlyConfigured:  # a malformed token lets no one in
        allowed = False
    results = None
    if allowed:
        try:
            results = await readiness.aresults(*readiness_settings())
        except ImproperlyConfigured:
            results = []
    scope = parse_qs(request.query).get("scope", [None])[-1]
    accept = request.headers.get("accept", "")
    return await asyncio.to_thread(metrics_answer, allowed, scope, accept, results)


class Request:
    """A request head, parsed: method, path, the headers probes send."""

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("not an HTTP/1 request line")
        self.method, target, self.version = parts
        self.path, _, self.query = target.partition("?")
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError("a header line without a colon")
            self.headers[name.strip().lower()] = value.strip()
        connection = self.headers.get("connection", "").lower()
        keep_alive = (
            connection != "close" if self.version == "HTTP/1.1" else connection == "keep-alive"
        )
        # A body is never read here: after one, the connection closes, lest it pass
        # for the next request.
        length = self.headers.get("content-length", "0")
        has_body = length not in ("", "0") or "transfer-encoding" in self.headers
        self.keep_alive = keep_alive and not has_body


class ProbeListener:
    """One process's listener: a socket and the thread whose event loop serves it."""

    def __init__(self, sock: socket.socket, paths: dict[str, str]) -> None:
        self._socket = sock
        self.paths = {**PATHS, **paths}
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        # Never asyncio's debug mode (PYTHONDEVMODE turns it on): its callbacks are this
        # module's, and recording a traceback per callback makes a storm of probes slow.
        self._loop.set_debug(False)
        self._stopping: asyncio.Event | None = None
        self._clients: set[asyncio.StreamWriter] = set()  # each open connection
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="connhealth-probes", daemon=True)

    def start(self) -> None:
        """Serve from the thread; raises what stopped it from serving, if anything."""
        self._thread.start()
        self._started.wait()
        if self._failed is not None:
            self._thread.join()
            raise self._failed

    def stop(self) -> None:
        """Stop serving, close the socket and the loop (waits for the thread)."""
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._loop.close()

    def abandon(self) -> None:
        """In a forked child, where the thread is gone: close the inherited socket only.

        The loop is left as it is (it cannot be closed while it counts as
        running); the listener is kept referenced so it is never collected.
        """
        self._socket.close()
        _abandoned.append(self)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException:
            if self._failed is None:
                raise
            # it could not serve: start() raises it in the caller
        finally:
            self._socket.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._client,
                sock=self._socket,
                limit=defaults.PROBE_HEAD_LIMIT,
                backlog=defaults.PROBE_BACKLOG,
            )
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._started.set()
        async with server:
            await self._stopping.wait()
            # No new connections. Not server.close() yet: a connection accepted in
            # this turn of the loop would then fail to attach to it, and leak.
            self._loop.remove_reader(self._socket.fileno())
            await asyncio.sleep(0)  # an accept already due runs, and makes its task
            # Each connection still open is closed under its reader, whose task then
            # ends (one awaiting a check ends by that check's deadline); a connection
            # accepted just now gets its task, and is closed, on a later round.
            while others := asyncio.all_tasks() - {asyncio.current_task()}:
                for writer in list(self._clients):
                    writer.transport.abort()
                await asyncio.wait(others, timeout=0.05)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the probe went away
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), defaults.PROBE_HEAD_SECONDS)
            writer.transport.abort()  # unsent bytes of a client that never reads: dropped

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection stays open for another."""
        try:
            # An idle keep-alive connection is closed without a word; a request begun
            # and not finished in time gets a 408.
            first = await asyncio.wait_for(reader.readexactly(1), defaults.PROBE_HEAD_SECONDS)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        try:
            head = first + await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), defaults.PROBE_HEAD_SECONDS
            )
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, {}, b"")
            return False
        except asyncio.TimeoutError:
            await self._send(writer, 408, {}, b"")
            return False
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                await self._send(writer, 400, {}, b"")
            return False
        try:
            request = Request(head)
        except ValueError:
            await self._send(writer, 400, {}, b"")
            return False
        kind = self.paths.get(request.path)
        if kind is None:
            await self._send(writer, 404, {}, b"", keep_alive=request.keep_alive)
        elif request.method not in ALLOWED:
            headers = {"Allow": ", ".join(ALLOWED)}
            await self._send(writer, 405, headers, b"", keep_alive=request.keep_alive)
        elif kind == "metrics":
            status, body, content_type = await scrape(request)
            await self._send(
                writer,
                status,
                {"Content-Type": content_type},
                body,
                keep_alive=request.keep_alive,
                head_only=request.method == "HEAD",
            )
        else:
            document = await answer(kind, request.headers.get("authorization", ""))
            body = json.dumps(document).encode()
            headers = {"Content-Type": CONTENT_TYPE}
            head_only = request.method == "HEAD"
            await self._send(
                writer,
                http_status(document),
                headers,
                body,
                keep_alive=request.keep_alive,
                head_only=head_only,
            )
        return request.keep_alive

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        keep_alive: bool = False,
        head_only: bool = False,
    ) -> None:
        headers = {
            **headers,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Connection": "keep-alive" if keep_alive else "close",
        }
        writer.write(head_of(status, headers) + (b"" if head_only else body))
        try:
            await asyncio.wait_for(writer.drain(), defaults.PROBE_HEAD_SECONDS)
        except asyncio.TimeoutError:
            writer.transport.abort()  # a client that never reads holds nothing of ours
            raise ConnectionResetError("the probe does not read its answer") from None


#: Listeners of a parent, abandoned in a forked child.
_abandoned: list[ProbeListener] = []
