"""``django_connhealth.redispy``: the raw PING's reply and the parser peeking, against real
redis-servers.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

import pytest
import redis
from django.core.cache import caches
from django.test import Client

from django_connhealth.redispy import (
    connection_defaults,
    holds_unread_reply,
    is_open,
    real_connection,
    run_commands,
    set_client_name,
)
from tests.helpers import (
    FAIL_DOC,
    TOKEN,
    acquire,
    body,
    health,
    pool_of,
)

if TYPE_CHECKING:
    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")


def test_unread_reply_is_found_in_the_parser_or_on_the_socket(fresh_redis: RedisServer) -> None:
    """Wherever redis-py's parser left a reply, the probe sees that the connection is dirty."""
    with health(fresh_redis.url):
        pool = pool_of(caches["default"])
        connection = acquire(pool)
        try:
            connection.connect()
            assert not holds_unread_reply(connection)
            connection.send_command("ECHO", "left-over")
            assert connection.can_read(timeout=1.0)
            on_socket = bool(select.select([connection._sock], [], [], 0)[0])
            assert holds_unread_reply(connection) != on_socket  # in exactly one of them
        finally:
            connection.disconnect()
            pool.release(connection)


def test_error_reply_fails_ready_with_the_servers_words(fresh_redis: RedisServer) -> None:
    with health(fresh_redis.url, CONNHEALTH_TOKEN=TOKEN):
        client = Client()
        assert client.get("/health/ready").status_code == 200
        with fresh_redis.client() as helper:
            helper.acl_setuser("default", enabled=True, nopass=True, commands=["-ping"])
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert body(response) == FAIL_DOC
        detail = client.get("/health/ready", headers={"Authorization": f"Bearer {TOKEN}"})
        [check] = body(detail)["checks"]["redis.default:responseTime"]
        assert check["status"] == "fail"
        assert "NOPERM" in check["output"], check


def test_run_commands_reads_every_reply_and_raises_the_first_error(redis_db: RedisDB) -> None:
    pool = redis.ConnectionPool.from_url(redis_db.url)
    connection = pool.make_connection()
    try:
        assert run_commands(connection, [("SET", "s", "1"), ("INCR", "s")]) == [b"OK", 2]
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            run_commands(connection, [("LPUSH", "s", "x"), ("INCR", "s"), ("GET", "s")])
        # Every reply was read: the connection answers its next command, not an old one.
        assert run_commands(connection, [("GET", "s")]) == [b"3"]
        assert not holds_unread_reply(connection)
    finally:
        connection.disconnect()
        pool.disconnect()


def test_open_connection_and_client_name_through_the_pool(redis_db: RedisDB) -> None:
    pool = redis.ConnectionPool.from_url(redis_db.url)
    connection = pool.make_connection()
    try:
        assert real_connection(connection) is connection
        assert not is_open(connection)
        assert not is_open(None)  # a free slot with room for a connection
        set_client_name(connection, "connhealth-test:name")
        connection.connect()
        assert is_open(connection)
        names = [e["name"] for e in redis_db.server.client_list()]
        assert "connhealth-test:name" in names
    finally:
        connection.disconnect()
        pool.disconnect()
    assert set(connection_defaults()) == {
        "socket_timeout",
        "socket_connect_timeout",
        "health_check_interval",
    }
