"""The fleet's connection budget (``django_connhealth.budget``): the arithmetic, then a real fleet.

The real fleet is gunicorn gthread 3 x 4 (pools of 4 + 2 = 6 each) on a
redis-server with ``maxclients 40``, as the command reports it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth.budget import budget, budget_warning, budgets
from tests.helpers import (
    connhealth,
    gunicorn,
    pools_of_every_worker,
    redis_caches,
    report_json,
    wait_for,
)
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import StartRedis

SERVER = {"maxclients": 40, "connected_clients": 19}


def test_budget_of_three_pools_of_six() -> None:
    assert budget([6, 6, 6], SERVER, 25, others=0) == {
        "maxclients": 40,
        "connected_clients": 19,
        "fleet_max_connections": 18,
        "surge_percent": 25,
        "needed_with_surge": 23,  # 22.5 rounded up, as Kubernetes rounds a surge
        "spare": 17,
        "processes_that_fit": 2,
    }
    assert budget_warning(budget([6, 6, 6], SERVER, 25, others=0)) is None


def test_others_take_their_share_of_maxclients() -> None:
    summary = budget([6, 6, 6], SERVER, 25, others=5)
    assert (summary["spare"], summary["processes_that_fit"]) == (12, 2)
    summary = budget([6, 6, 6], SERVER, 25, others=12)
    assert (summary["spare"], summary["processes_that_fit"]) == (5, 0)


def test_warnings_say_what_does_not_fit() -> None:
    assert budget_warning(budget([6, 6, 6], SERVER, 150, others=0)) == (
        "a rolling deploy with a 150% surge may open 45 connections, more than maxclients 40"
    )
    assert budget_warning(budget([20, 21], SERVER, 0, others=0)) == (
        "the fleet's pools may open 41 connections, more than maxclients 40"
    )
    unknown = budget([6], {"maxclients": None, "connected_clients": None}, 25, others=0)
    assert (unknown["spare"], unknown["processes_that_fit"]) == (None, None)
    assert budget_warning(unknown) is None


def test_a_surge_that_fits_but_not_beside_the_others_warns() -> None:
    summary = budget([6, 6, 6], SERVER, 25, others=20)
    assert (summary["needed_with_surge"], summary["spare"]) == (23, -3)
    assert budget_warning(summary) == (
        "a rolling deploy with a 25% surge may open 23 connections, and 20 other "
        "connections are open on the server: more than maxclients 40"
    )


def test_no_process_no_budget() -> None:
    summary = budget([], SERVER, 25, others=0)
    assert (summary["fleet_max_connections"], summary["needed_with_surge"]) == (0, 0)
    assert (summary["spare"], summary["processes_that_fit"]) == (40, None)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=500), max_size=50),
    surge=st.floats(min_value=0, max_value=1000),
    maxclients=st.integers(min_value=0, max_value=100_000),
    others=st.integers(min_value=0, max_value=1000),
)
def test_budget_properties(sizes: list[int], surge: float, maxclients: int, others: int) -> None:
    summary = budget(sizes, {"maxclients": maxclients, "connected_clients": 0}, surge, others)
    fleet_max = sum(sizes)
    assert summary["fleet_max_connections"] == fleet_max
    # the surge added, rounded up to whole connections, never down
    assert fleet_max <= summary["needed_with_surge"] <= math.ceil(fleet_max * (1 + surge / 100)) + 1
    assert summary["needed_with_surge"] >= fleet_max * (1 + surge / 100) - 1e-6
    assert summary["spare"] == maxclients - summary["needed_with_surge"] - others
    largest = max(sizes, default=0)
    if largest:
        fit = summary["processes_that_fit"]
        assert fit * largest <= max(0, summary["spare"]) < (fit + 1) * largest
    warned = budget_warning(summary) is not None
    assert warned is (summary["spare"] < 0 or fleet_max > maxclients)


def test_last_seen_budget_is_said_for_its_server_only() -> None:
    budgets.clear()
    assert budgets.known("redis://a:6379/0") == ""
    budgets.remember("redis://a:6379/0", {"max_connections": 18, "processes": 3}, SERVER)
    said = budgets.known("redis://a:6379/0")
    assert said.startswith(" (at ")
    assert said.endswith(
        " UTC, its 3 processes' pools could open 18 connections against maxclients 40)"
    )
    assert budgets.known("redis://b:6379/0") == ""
    budgets.clear()


# ----------------------------------------------------------------- a real fleet


@pytest.mark.gunicorn
def test_budget_of_a_gunicorn_fleet(start_redis: StartRedis, tmp_path: Path) -> None:
    server = start_redis(extra_args=["--maxclients", "40"])
    env = child_env(REDIS_URL=server.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    args = ["-k", "gthread", "-w", "3", "--threads", "4"]
    with (
        gunicorn(args, env, tmp_path / "gunicorn.log", workers=3) as (base, _, workers),
        override_settings(CACHES=redis_caches(server.url)),
    ):
        pools_of_every_worker(base, workers)

        def fleet_published() -> bool:
            report, _ = report_json()
            rows = report["caches"]["default"]["processes"]
            return sorted(row["pid"] for row in rows if row["max_connections"]) == sorted(workers)

        wait_for(fleet_published, what="every worker's record")
        report, code = report_json()
        text, _, text_code = connhealth()
        surged, _, surged_code = connhealth("--format", "json", "--surge", "150", "--check")
        _, _, checked_code = connhealth("--check")
    assert (code, text_code, checked_code) == (0, 0, 0)
    cache: dict[str, Any] = report["caches"]["default"]
    assert cache["others"] == []  # nothing but the fleet on this server
    assert cache["fleet"]["budget"] == {
        "maxclients": 40,
        "connected_clients": cache["server"]["connected_clients"],
        "fleet_max_connections": 18,
        "surge_percent": 25,
        "needed_with_surge": 23,
        "spare": 17,
        "processes_that_fit": 2,
    }
    assert "warning" not in cache["fleet"]
    assert (
        "  budget: 18 connections, 23 with a 25% surge; maxclients 40 leaves 17 spare, "
        "room for 2 more processes like the largest"
    ) in text.splitlines()
    # --surge 150: 45 > 40, a warning, and --check's own exit status
    assert surged_code == 3
    assert (
        "a rolling deploy with a 150% surge may open 45 connections, more than maxclients 40"
        in surged
    )


@pytest.mark.parametrize("value", ["abc", "-5", "1001", "nan", "inf", "", "25%"])
def test_malformed_surge_is_a_command_error(value: str) -> None:
    out, err, code = connhealth("--surge", value)
    assert code == 1
    assert out == ""
    assert err == (
        f"CommandError: --surge {value!r} is not valid: give a percentage from 0 to 1000, "
        "such as 25 (Kubernetes' default maxSurge).\n"
    )
