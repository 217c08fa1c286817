"""Metrics (``django_connhealth.metrics``, ``scrape``): the families, ``health/metrics`` and the
command's ``--format openmetrics``, checked by Debian's ``promtool`` against real redis-servers.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client, override_settings
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from django_connhealth.metrics import AliasFigures, exposition, wants_openmetrics
from tests.helpers import TOKEN, connhealth, redis_caches, unique_host
from tests.servers import cache_worker

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB, StartRedis

pytestmark = pytest.mark.usefixtures("isolated_probes")

RECORD = {
    "host": "web-a",
    "pid": 42,
    "in_use": 1,
    "idle": 4,
    "max_connections": 6,
    "peak_in_use": 3,
    "waits": 12,
    "wait_seconds": 0.25,
    "timeouts": 0,
    "leaks": 1,
}
FIGURES = [AliasFigures("default", [RECORD], {"connected_clients": 17, "maxclients": 40}, True)]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
URLS = "tests.health_urls"
FAMILIES = [
    "connhealth_pool_connections",
    "connhealth_pool_max_connections",
    "connhealth_pool_peak_used_connections",
    "connhealth_pool_waits",
    "connhealth_pool_wait_seconds",
    "connhealth_pool_timeouts",
    "connhealth_pool_leaks",
    "connhealth_server_connected_clients",
    "connhealth_server_maxclients",
    "connhealth_ready",
]


def openmetrics_families(body: bytes) -> list[Any]:
    """The families of an OpenMetrics exposition, by prometheus_client's strict parser."""
    return list(parse_openmetrics(body.decode()))


def promtool_check(text: bytes) -> None:
    """promtool's lint, for the Prometheus text format (promtool 2.42 lints no other)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, (done.stdout, done.stderr, text.decode())


def test_families_and_both_expositions() -> None:
    body, content_type = exposition(FIGURES)
    assert content_type == OPENMETRICS
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert [family.name for family in openmetrics_families(body)] == FAMILIES
    for line in (
        'connhealth_pool_connections{alias="default",host="web-a",pid="42",state="used"} 1.0',
        'connhealth_pool_connections{alias="default",host="web-a",pid="42",state="idle"} 4.0',
        'connhealth_pool_max_connections{alias="default",host="web-a",pid="42"} 6.0',
        'connhealth_pool_peak_used_connections{alias="default",host="web-a",pid="42"} 3.0',
        'connhealth_pool_waits_total{alias="default",host="web-a",pid="42"} 12.0',
        'connhealth_pool_wait_seconds_total{alias="default",host="web-a",pid="42"} 0.25',
        'connhealth_pool_timeouts_total{alias="default",host="web-a",pid="42"} 0.0',
        'connhealth_pool_leaks_total{alias="default",host="web-a",pid="42"} 1.0',
        'connhealth_server_connected_clients{alias="default"} 17.0',
        'connhealth_server_maxclients{alias="default"} 40.0',
        'connhealth_ready{alias="default"} 1.0',
    ):
        assert line in text.splitlines(), line
    body, content_type = exposition(FIGURES, openmetrics=False)
    assert content_type == PROMETHEUS
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "connhealth_pool_waits" in names
    promtool_check(body)


def test_unknown_figures_make_no_series() -> None:
    record = {"host": "web-a", "pid": 42, "in_use": None, "idle": None, "max_connections": 6}
    text = exposition([AliasFigures("default", [record], {}, None)])[0].decode()
    assert "state=" not in text
    assert "connhealth_ready{" not in text
    assert "connhealth_server_maxclients{" not in text
    assert 'connhealth_pool_max_connections{alias="default",host="web-a",pid="42"} 6.0' in text


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("", True),
        ("*/*", True),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", True),
        ("text/plain;version=0.0.4", False),
        ("text/plain", False),
    ],
)
def test_accept(accept: str, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics


def test_endpoint_shows_this_host_or_the_fleet(redis_db: RedisDB, tmp_path: Path) -> None:
    here, there = unique_host(), unique_host()
    caches = redis_caches(redis_db.url, environ={"CONNHEALTH_HOST": here})
    with (
        override_settings(CACHES=caches, CONNHEALTH_TOKEN=TOKEN, ROOT_URLCONF=URLS),
        cache_worker(redis_db.url, here, hold=1, log_path=tmp_path / "a.log") as mine,
        cache_worker(redis_db.url, there, hold=0, log_path=tmp_path / "b.log") as theirs,
    ):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        local = client.get("/health/metrics")
        fleet = client.get("/health/metrics", {"scope": "fleet"})
        plain = client.get("/health/metrics", HTTP_ACCEPT="text/plain;version=0.0.4")
        refused = [
            Client().get("/health/metrics"),
            Client().get("/health/metrics", HTTP_AUTHORIZATION="Bearer wrong"),
        ]
        bad_scope = client.get("/health/metrics", {"scope": "world"})
    assert local.status_code == fleet.status_code == plain.status_code == 200
    assert local["Content-Type"] == OPENMETRICS
    assert plain["Content-Type"] == PROMETHEUS
    assert local["Cache-Control"] == "no-store"
    hosts_local = _hosts(local.content)
    assert hosts_local == {(here, str(mine.pid))}
    assert _hosts(fleet.content) == {(here, str(mine.pid)), (there, str(theirs.pid))}
    assert 'connhealth_ready{alias="default"} 1.0' in local.content.decode()
    assert len(openmetrics_families(local.content)) == len(FAMILIES)
    promtool_check(plain.content)
    for response in refused:
        assert (response.status_code, response.content) == (403, b"")
        assert response["Cache-Control"] == "no-store"
    assert bad_scope.status_code == 400
    assert b"scope='world' is not valid" in bad_scope.content


def _hosts(body: bytes) -> set[tuple[str, str]]:
    return {
        (sample.labels["host"], sample.labels["pid"])
        for family in text_string_to_metric_families(body.decode().replace("# EOF\n", ""))
        if family.name == "connhealth_pool_max_connections"
        for sample in family.samples
    }


def test_command_openmetrics_and_no_password(start_redis: StartRedis, tmp_path: Path) -> None:
    server = start_redis(password="s3cret-pass")
    url = f"redis://:s3cret-pass@{server.host}:{server.port}/0"
    with (
        override_settings(CACHES=redis_caches(url)),
        cache_worker(url, unique_host(), hold=1, log_path=tmp_path / "w.log") as worker,
    ):
        out, err, code = connhealth("--format", "openmetrics")
        text_out, _, text_code = connhealth("--format", "prometheus")
        with override_settings(CONNHEALTH_TOKEN=TOKEN, ROOT_URLCONF=URLS):
            scraped = Client().get(
                "/health/metrics", {"scope": "fleet"}, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
            )
    assert (code, err) == (0, "")
    assert out.endswith("# EOF\n")
    assert f'pid="{worker.pid}"' in out
    assert 'connhealth_ready{alias="default"} 1.0' in out
    assert len(openmetrics_families(out.encode())) == len(FAMILIES)
    assert text_code == 0
    promtool_check(text_out.encode())
    for text in (out, text_out, scraped.content.decode()):
        assert "s3cret-pass" not in text
