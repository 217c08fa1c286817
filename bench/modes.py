"""Pool classes for the configurations benchmark 3 compares with sized pools."""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import request_finished
from redis.connection import ConnectionPool

_held = threading.local()


class PerRequestConnectionPool(ConnectionPool):
    """The anti-pattern: each request opens its own connection and closes it at the end.

    The first cache call of a request connects (a new TCP connection and socket);
    the request's later calls reuse it; ``request_finished`` disconnects it. This is
    what ``redis.Redis.from_url(...)`` inside a view does, with django-redis's
    serialization kept so that only the connection handling differs.
    """

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        held: dict[PerRequestConnectionPool, Any] = _held.__dict__.setdefault("conns", {})
        connection = held.get(self)
        if connection is None:
            connection = super().get_connection(*args, **kwargs)
            held[self] = connection
        return connection

    def release(self, connection: Any) -> None:
        held: dict[PerRequestConnectionPool, Any] = _held.__dict__.get("conns", {})
        if held.get(self) is connection:
            return  # kept for the rest of this request
        super().release(connection)

    def end_request(self, connection: Any) -> None:
        connection.disconnect()
        super().release(connection)


def _end_request(**kwargs: Any) -> None:
    held: dict[PerRequestConnectionPool, Any] = _held.__dict__.pop("conns", {})
    for pool, connection in held.items():
        pool.end_request(connection)


request_finished.connect(_end_request, dispatch_uid="bench.modes.per_request")
