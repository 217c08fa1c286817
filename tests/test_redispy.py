"""``django_connhealth.redispy``: the raw PING's reply and the parser peeking, against real
redis-servers.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

import pytest
from django.core.cache import caches
from django.test import Client

from django_connhealth.redispy import holds_unread_reply
from tests.helpers import (
    FAIL_DOC,
    TOKEN,
    acquire,
    body,
    health,
    pool_of,
)

if TYPE_CHECKING:
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
