"""``ProbeMiddleware``: probes answered before ALLOWED_HOSTS, through Django's test client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.helpers import (
    PATHS,
    POD_IP,
    assert_detail,
    body,
    health,
)

if TYPE_CHECKING:
    from tests.conftest import RedisDB

pytestmark = pytest.mark.usefixtures("isolated_probes")


@pytest.mark.django_db
def test_probe_middleware_answers_before_allowed_hosts(redis_db: RedisDB) -> None:
    with health(redis_db.url):
        client = Client()
        for path in PATHS:
            response = client.get(path, HTTP_HOST=POD_IP)
            assert response.status_code == 200, path
            assert body(response) == {"status": "pass"}
        assert client.head("/health/ready", HTTP_HOST=POD_IP).status_code == 200
        assert client.post("/health/ready", HTTP_HOST=POD_IP).status_code == 405
        # Everything else still goes through ALLOWED_HOSTS.
        assert client.get("/other", HTTP_HOST=POD_IP).status_code == 400
        assert client.get("/other").status_code == 200

        # A session cookie sends the request through the URLconf (for staff detail).
        client.force_login(get_user_model().objects.create_user("staff", is_staff=True))
        assert client.get("/health/ready", HTTP_HOST=POD_IP).status_code == 400
        assert_detail(client.get("/health/ready"), redis_db.url)


def test_without_probe_middleware_pod_ip_is_refused(redis_db: RedisDB) -> None:
    """Why ProbeMiddleware exists: the kubelet's Host is not in ALLOWED_HOSTS."""
    with health(redis_db.url, probe=False):
        client = Client()
        for path in PATHS:
            assert client.get(path, HTTP_HOST=POD_IP).status_code == 400
            assert client.get(path).status_code == 200
