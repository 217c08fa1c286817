"""The fleet report's pure parts (``django_connhealth.report``): rows, notes, the fleet."""

from __future__ import annotations

from typing import Any

from django_connhealth.report import Me, fleet, processes, unnamed_notes

ME = Me("me", 1)


def rows_of(records: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    connections = {("web-1", 10): 3, ("web-2", 20): 2, ("web-3", 30): 4}
    return processes(connections, records, ME)


def test_unnamed_processes_have_unknown_connections_and_a_note_each_reason() -> None:
    records: dict[tuple[str, int], dict[str, Any]] = {
        ("web-1", 10): {"named": True, "name_refused": False, "max_connections": 5},
        ("web-2", 20): {"named": False, "name_refused": True, "max_connections": 5},
        ("web-3", 30): {"named": False, "name_refused": False, "max_connections": 5},
    }
    rows = rows_of(records)
    assert [(row["pid"], row["connections"], row["named"]) for row in rows] == [
        (10, 3, True),
        (20, None, False),
        (30, None, False),
    ]
    assert unnamed_notes(rows, records) == [
        "CLIENT SETNAME refused by the server's ACL for web-2:20: their connections are "
        "unnamed, so their counts are unknown.",
        "web-3:30 name their connections themselves (client_name): their counts are unknown.",
    ]
    # A count unknown makes the fleet's unknown: never an undercount.
    assert fleet(rows, {"maxclients": 10})["connections"] is None


def test_named_processes_are_counted() -> None:
    records = {
        process: {"named": True, "max_connections": 5}
        for process in [("web-1", 10), ("web-2", 20), ("web-3", 30)]
    }
    rows = rows_of(records)
    assert unnamed_notes(rows, records) == []
    assert fleet(rows, {"maxclients": 10, "connected_clients": 9}) == {
        "processes": 3,
        "connections": 9,
        "max_connections": 15,
        "budget": {
            "maxclients": 10,
            "connected_clients": 9,
            "fleet_max_connections": 15,
            "surge_percent": 25,
            "needed_with_surge": 19,  # 18.75, rounded up
            "spare": -9,
            "processes_that_fit": 0,
        },
        "warning": "the fleet's pools may open 15 connections, more than maxclients 10",
    }


def test_ghost_connections_are_those_beyond_what_the_pool_holds() -> None:
    records: dict[tuple[str, int], dict[str, Any]] = {
        ("web-1", 10): {"in_use": 1, "idle": 2, "stale": False},  # holds 3, the server 3
        ("web-2", 20): {"in_use": 0, "idle": 0, "stale": False},  # holds none, the server 2
        ("web-3", 30): {"in_use": 1, "idle": 1, "stale": True},  # an old record: unknown
    }
    rows = processes({("web-1", 10): 3, ("web-2", 20): 2, ("web-3", 30): 4, ("web-4", 40): 1},
                     records, ME)  # fmt: skip
    assert {row["pid"]: row["ghost_connections"] for row in rows} == {
        10: 0,
        20: 2,
        30: None,
        40: None,  # never published: nothing to compare with
    }
    assert processes(None, records, ME)[0]["ghost_connections"] is None  # CLIENT LIST refused


def test_ghosts_count_only_connections_older_than_the_record() -> None:
    """A connection opened since the record was written is in no record: never a ghost."""
    records: dict[tuple[str, int], dict[str, Any]] = {
        ("web-1", 10): {"in_use": 1, "idle": 1, "stale": False, "age_seconds": 2.5},
    }
    ages = {("web-1", 10): [9, 9, 1, 3, 4]}  # two young ones: opened after the record
    [row] = processes({("web-1", 10): 5}, records, ME, ages)
    assert row["connections"] == 5
    assert row["ghost_connections"] == 1  # 3 old enough (9, 9, 4), the pool held 2
    records[("web-1", 10)]["age_seconds"] = None
    [row] = processes({("web-1", 10): 5}, records, ME, ages)
    assert row["ghost_connections"] is None  # no age to compare with
