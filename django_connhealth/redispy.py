"""Every use of redis-py's private parts, in one place.

A redis-py release that changes its internals changes this file only: the
socket of a connection (``_sock``), the redis-py 8 client-side-cache proxy
(``_conn``), parser buffers and the hiredis "nothing parsed" sentinel, the
defaults of a connection's keyword arguments, and the raw RESP PING a probe
writes straight to a pooled socket.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from collections.abc import Sequence

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


class Moment:
    """A ``time.monotonic()`` moment, read at each wait of a ping."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class UnexpectedReply(RedisConnectionError):
    """The server answered a PING with something else: an error, or stale data."""


def real_connection(connection: Any) -> Any:
    """The connection itself, under redis-py 8's client-side-cache proxy if any."""
    return getattr(connection, "_conn", connection)


def is_open(connection: Any) -> bool:
    """Whether ``connection`` (a free pool slot: maybe ``None``) holds an open socket."""
    return getattr(real_connection(connection), "_sock", None) is not None


def own_pool(pool: Any) -> None:
    """Reset ``pool`` if this process did not create it (a forked child's first use)."""
    pool._checkpid()


def forget_connection(pool: Any, connection: Any) -> None:
    """Drop a connection the pool gave up on from its list of every connection made.

    redis-py's blocking pool keeps each in ``_connections`` for good: a pool
    that drops connections (a Sentinel pool after a failover, or while no
    master is named) would keep every one.
    """
    with contextlib.suppress(ValueError):
        pool._connections.remove(connection)


def every_connection(pool: Any) -> list[Any]:
    """Every connection a blocking pool has made and not dropped, in use or free."""
    return list(pool._connections)


def set_client_name(connection: Any, name: str) -> None:
    """Make ``connection`` send ``CLIENT SETNAME name`` when it connects."""
    real_connection(connection).client_name = name


def set_up(connection: Any) -> None:
    """A new connection's set-up (HELLO or AUTH, SELECT, ...), without health checks.

    redis-py's ``on_connect()`` health-checks each command it sends once the
    connection's ``health_check_interval`` is due, as it is on a new one: when
    the server refuses the set-up (``NOAUTH``, maxclients) the check's PING
    reconnects, and so sets up again, without end (a RecursionError). A new
    connection needs no check: the interval is off while it is set up.
    """
    interval, connection.health_check_interval = connection.health_check_interval, 0
    try:
        connection.on_connect()
    finally:
        connection.health_check_interval = interval


def holds_unread_reply(connection: Any) -> bool:
    """Whether redis-py's parser on ``connection`` holds a reply nobody has read.

    ``can_read()`` moves a waiting reply into the parser (redis-py's own
    parsers always, hiredis before redis-py 8), and redis-py 8 with RESP3 no
    longer looks for one at checkout: the next command would read it as its
    own. The probe never reads through the parser, so it drops such a
    connection instead of handing it back.
    """
    parser = getattr(real_connection(connection), "_parser", None)
    unread_bytes = getattr(getattr(parser, "_buffer", None), "unread_bytes", None)
    if unread_bytes is not None:  # redis-py's own parsers
        return bool(unread_bytes())
    reader = getattr(parser, "_reader", None)
    if reader is None:
        return False
    if getattr(reader, "has_data", lambda: False)():
        return True
    # redis-py 5's hiredis parser keeps a reply it has already parsed aside.
    parsed = getattr(parser, "_next_response", _NOTHING_PARSED)
    return parsed is not _NOTHING_PARSED and parsed is not False


def _nothing_parsed() -> object:
    """The sentinel of redis-py 5's hiredis parser for "no reply parsed yet".

    Looked up so that a redis-py without it (8 has no such sentinel) still
    imports this module.
    """
    try:
        from redis._parsers import hiredis
    except ImportError:  # pragma: no cover - every supported redis-py has the module
        return object()
    return getattr(hiredis, "NOT_ENOUGH_DATA", object())


_NOTHING_PARSED = _nothing_parsed()


def ping(connection: Any, answer_by: Moment) -> None:
    """One PING on ``connection`` (connecting it if need be), answered by ``answer_by``.

    The PING is written to the socket and its reply read from it, past
    redis-py's parser: readiness probes run every few seconds on every pod,
    and the parser would double their cost. A redis-py 8 cache proxy does its
    own I/O: it goes through redis-py.
    """
    connection.connect()  # nothing to do when connected; bounded by the connect timeout
    sock = getattr(connection, "_sock", None)
    if not isinstance(sock, socket.socket):
        ping_through_parser(connection, answer_by)
        return
    reply = b""
    try:
        sock.settimeout(_remaining(answer_by))
        sock.sendall(PING)
        while not reply.endswith(b"\r\n"):
            sock.settimeout(_remaining(answer_by))
            chunk = sock.recv(4096)
            if not chunk:
                raise RedisConnectionError("Connection closed by server.")
            reply += chunk
    except TimeoutError:  # socket.timeout
        raise RedisTimeoutError("no answer in time") from None
    finally:
        sock.settimeout(connection.socket_timeout)
    if reply != PONG:
        text = reply[1:].strip() if reply.startswith(b"-") else reply[:80]
        raise UnexpectedReply(f"PING answered with {text.decode(errors='replace')!r}")


def _remaining(answer_by: Moment) -> float:
    remaining = answer_by.at - time.monotonic()
    if remaining <= 0:
        raise RedisTimeoutError("no answer in time")
    return remaining


def ping_through_parser(connection: Any, answer_by: Moment) -> None:
    """One PING through redis-py's own send and parser, answered by ``answer_by``."""
    connection.send_command("PING", check_health=False)
    remaining = answer_by.at - time.monotonic()
    if remaining <= 0 or not connection.can_read(timeout=remaining):
        raise RedisTimeoutError("no answer in time")
    connection.read_response()


def run_commands(connection: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write and read every reply: a pipeline on one connection.

    Every reply is read before an error reply is raised, so the connection
    is left clean either way.
    """
    connection.send_packed_command(connection.pack_commands(commands))
    replies: list[Any] = []
    error: ResponseError | None = None
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            error = error or exc
            replies.append(exc)
    if error is not None:
        raise error
    return replies


@cache
def connection_defaults() -> dict[str, Any]:
    """redis-py's defaults for the connection keywords a pool passes on."""
    params = inspect.signature(AbstractConnection.__init__).parameters
    return {
        name: params[name].default
        for name in ("socket_timeout", "socket_connect_timeout", "health_check_interval")
    }
