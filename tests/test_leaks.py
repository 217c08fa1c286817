"""Leak reports (``django_connhealth.leaks``): a connection held too long, where, and how often.

In this process against a real redis-server, then under real gunicorn with a
view that keeps a pooled connection for 3 s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_connhealth import leaks
from testproject.traffic import get
from tests.helpers import acquire, gunicorn, health, pool_of, redis_caches, report_json, wait_for
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")


def hold_in_a_thread_for_a_while(
    pool: object, held: threading.Event, done: threading.Event
) -> None:
    connection = acquire(pool)
    held.set()
    done.wait(10)
    pool.release(connection)  # type: ignore[attr-defined]


def test_held_past_the_threshold_is_reported_once_with_the_holders_stack(
    fresh_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with health(fresh_redis.url):
        caches["default"].get("warm")
        pool = pool_of(caches["default"])
        held, done = threading.Event(), threading.Event()
        holder = threading.Thread(target=hold_in_a_thread_for_a_while, args=(pool, held, done))
        holder.start()
        try:
            held.wait(10)
            assert leaks.check(pool, 0.2) < 0.2  # not yet
            assert pool.slots.leaks == 0
            time.sleep(0.3)
            with caplog.at_level(logging.WARNING, logger="django_connhealth"):
                longest = leaks.check(pool, 0.2)
                again = leaks.check(pool, 0.2)  # the same checkout: said once
            assert longest >= 0.3
            assert again >= longest
            assert pool.slots.leaks == 1
            [warning] = [r for r in caplog.records if "checked out for" in r.getMessage()]
            text = warning.getMessage()
            assert text.startswith("connhealth: a connection of cache 'default' has been checked")
            assert "more than CONNHEALTH_LEAK_SECONDS=0.2" in text
            assert "in hold_in_a_thread_for_a_while" in text  # where the holder is now
            assert "done.wait(10)" in text
            assert leaks.check(pool, 0) >= longest  # 0: held figures, no reports
        finally:
            done.set()
            holder.join()
        assert leaks.check(pool, 0.2) == 0.0  # given back: nothing held
        assert leaks.in_use(pool) == []


def test_the_apps_own_checkouts_are_no_leak(fresh_redis: RedisServer) -> None:
    """Readiness and publishing take connections with checkout(): short, and never reported."""
    with health(fresh_redis.url):
        caches["default"].get("warm")
        pool = pool_of(caches["default"])
        connection = pool.checkout(time.monotonic() + 1)
        try:
            time.sleep(0.05)
            assert leaks.check(pool, 0.01) == 0.0
        finally:
            pool.checkin(connection)
        assert pool.slots.leaks == 0


@pytest.mark.gunicorn
@pytest.mark.parametrize(("threshold", "expected"), [("1", 1), ("0", 0)])
def test_a_view_that_holds_a_connection(
    threshold: str, expected: int, redis_db: RedisDB, tmp_path: Path
) -> None:
    log = tmp_path / "gunicorn.log"
    env = child_env(
        REDIS_URL=redis_db.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_LEAK_SECONDS=threshold,
        CONNHEALTH_PUBLISH_SECONDS="0.5",
    )
    args = ["-k", "gthread", "-w", "1", "--threads", "2"]
    with gunicorn(args, env, log, workers=1) as (base, _, [worker]):
        # the pool made, and publishing on its heartbeat, before the hold
        assert get(f"{base}/work")[0] == 200
        assert get(f"{base}/hold?seconds=3", timeout=30)[0] == 200

        def published() -> dict[str, Any]:
            with override_settings(CACHES=redis_caches(redis_db.url)):
                report, _ = report_json()
            rows = report["caches"]["default"]["processes"]
            return next(row for row in rows if row["pid"] == worker)

        # a publication after the hold ended: the count stays, nothing is held
        wait_for(lambda: published()["held_longest_seconds"] == 0, what="a later publication")
        row = published()
        text = log.read_text()
    assert row["leaks"] == expected
    warnings = [line for line in text.splitlines() if "has been checked out for" in line]
    assert len(warnings) == expected, text
    if expected:
        assert "connhealth: a connection of cache 'default' has been checked out for" in warnings[0]
        assert 'testproject/views.py", line' in text
        assert "in hold" in text
