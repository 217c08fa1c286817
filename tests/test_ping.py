"""``bounded_ping`` (``django_connhealth.ping``): the pooled connection it pings, and how a
broken, dirty or foreign one is handled, seen through the readiness endpoint.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

import pytest
from django.core.cache import caches
from django.test import Client

from tests.helpers import (
    BOUND,
    TOKEN,
    acquire,
    body,
    connhealth_clients,
    health,
    pings,
    pool_of,
    timed,
)

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")


def test_pooled_connection_closed_by_the_server_is_replaced_not_reported(
    fresh_redis: RedisServer,
) -> None:
    """A server that closed an idle connection (timeout, CLIENT KILL) is still ready."""
    with health(fresh_redis.url, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        with fresh_redis.client() as helper:
            killed = helper.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        response = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.content
        assert body(response)["status"] == "pass"
        assert connhealth_clients(fresh_redis) == 1
        caches["default"].set("after", 1)
        assert caches["default"].get("after") == 1


@pytest.mark.parametrize("where", ["socket", "parser"])
def test_dirty_pooled_connection_is_replaced_not_reported(
    where: str, fresh_redis: RedisServer
) -> None:
    """A connection given back with a reply unread must neither fail the probe nor leak it.

    ``socket``: the reply waits in the kernel. ``parser``: redis-py's can_read()
    has seen it (redis-py 5 moves it into the parser's buffer; redis-py's own
    checkout then drops the connection, and the probe never reads that buffer).
    """
    with health(fresh_redis.url):
        client = Client()
        pool = pool_of(caches["default"])
        connection = acquire(pool)
        connection.send_command("ECHO", "left-over")  # its reply is never read
        if where == "socket":
            assert select.select([connection._sock], [], [], 1.0)[0]
        else:
            assert connection.can_read(timeout=1.0)
        pool.release(connection)
        pings_before = pings(fresh_redis)
        response = client.get("/health/ready")
        assert response.status_code == 200, response.content
        assert body(response) == {"status": "pass"}
        if where == "socket":
            assert pings(fresh_redis) == pings_before + 2  # the dirty connection, then a new one
        caches["default"].set("after", "value")
        assert caches["default"].get("after") == "value"


def test_pool_class_of_the_users_is_pinged_through_redis_py(fresh_redis: RedisServer) -> None:
    pool_class = "redis.connection.BlockingConnectionPool"
    options = {"CONNECTION_POOL_CLASS": pool_class}
    with health(fresh_redis.url, options=options, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = client.get("/health/ready", headers=auth)
        assert response.status_code == 200, response.content
        document = body(response)
        assert document["status"] == "pass"
        assert "redis.default:connections" not in document["checks"]  # no figures to show
        fresh_redis.kill()
        failed, elapsed = timed(client.get, "/health/ready")
        assert failed.status_code == 503
        assert elapsed < BOUND, elapsed


def test_full_pool_of_the_users_does_not_make_a_busy_pod_look_dead(
    fresh_redis: RedisServer,
) -> None:
    """A user's BlockingConnectionPool with every connection taken: the server still answers."""
    options = {"CONNECTION_POOL_CLASS": "redis.connection.BlockingConnectionPool"}
    with health(fresh_redis.url, options=options, pool={"max_connections": 2}):
        pool = caches["default"].client.get_client().connection_pool  # type: ignore[attr-defined]
        held = [acquire(pool), acquire(pool)]
        try:
            response, elapsed = timed(Client().get, "/health/ready")
            assert (response.status_code, body(response)) == (200, {"status": "pass"})
            assert elapsed < BOUND
        finally:
            for connection in held:
                pool.release(connection)
