"""``manage.py connhealth``: pool usage of every process on every host."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_connhealth import defaults, publish
from django_connhealth.adapters.registry import sized_aliases
from django_connhealth.budget import DEFAULT_SURGE_PERCENT, MAX_SURGE_PERCENT
from django_connhealth.errors import SettingError
from django_connhealth.knobs import KNOBS
from django_connhealth.metrics import AliasFigures, exposition
from django_connhealth.parse import parse_seconds
from django_connhealth.report import full_report
from django_connhealth.scrape import records_of
from django_connhealth.sizing import gunicorn_argv, resolve_concurrency

if TYPE_CHECKING:
    from collections.abc import Callable

COLUMNS = (
    ("ROLE", "role"),
    ("HOST", "host"),
    ("PID", "pid"),
    ("CONNS", "connections"),
    ("IN USE", "in_use"),
    ("IDLE", "idle"),
    ("PEAK", "peak_in_use"),
    ("WAITS", "waits"),
    ("TIMEOUTS", "timeouts"),
    ("MAX", "max_connections"),
    ("AGE", "age_seconds"),
)


def _watch_seconds(value: str) -> float:
    try:
        return parse_seconds(
            "--watch",
            value,
            minimum=defaults.WATCH_MIN_SECONDS,
            zero=False,
            maximum=defaults.WATCH_MAX_SECONDS,
            flag=True,
        )
    except SettingError as exc:
        raise CommandError(str(exc)) from None


def _surge_percent(value: str) -> float:
    """``--surge PERCENT``: 0 to 1000, as a number (``25``, ``12.5``)."""
    try:
        percent = float(value)
    except ValueError:
        percent = -1.0
    if not 0 <= percent <= MAX_SURGE_PERCENT:  # NaN fails too
        raise CommandError(
            f"--surge {value!r} is not valid: give a percentage from 0 to "
            f"{MAX_SURGE_PERCENT:g}, such as 25 (Kubernetes' default maxSurge)."
        )
    return percent


def _shown(value: object) -> str:
    """A figure as the table shows it: ``unknown`` for one the server would not give."""
    return "unknown" if value is None else str(value)


class Command(BaseCommand):
    help = (
        "Report Redis pool usage of every process on every host: pool settings and their "
        "sources, server connections, and each process's published pool figures."
    )
    # The report must run whatever the checks say: it is how a broken pool is diagnosed.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format",
            choices=("table", "json", "openmetrics", "prometheus"),
            default="table",
            help=(
                "Output format (default: table); openmetrics: the fleet's metrics as "
                "OpenMetrics text; prometheus: the same as Prometheus text, for "
                "node-exporter's textfile collector."
            ),
        )
        parser.add_argument(
            "--alias",
            action="append",
            dest="aliases",
            metavar="NAME",
            help="Report only this cache alias (repeatable).",
        )
        parser.add_argument(
            "--watch",
            metavar="SECONDS",
            type=str,
            default=None,
            help="Refresh every SECONDS until interrupted.",
        )

        parser.add_argument(
            "--surge",
            metavar="PERCENT",
            type=str,
            default=None,
            help=(
                "A rolling deploy's surge, in percent of the fleet, for the budget "
                f"(default: {DEFAULT_SURGE_PERCENT:g}, Kubernetes' maxSurge)."
            ),
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                "Exit with status 3 when the fleet, with the surge, would not fit under "
                "maxclients (a gate before a deploy)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # This process reads figures; it has none worth publishing. Resumed after,
        # for a process that runs the command in-process (call_command) and goes on.
        with publish.paused():
            self._handle(options)

    def _handle(self, options: dict[str, Any]) -> None:
        watch = None if options["watch"] is None else _watch_seconds(options["watch"])
        surge = (
            DEFAULT_SURGE_PERCENT if options["surge"] is None else _surge_percent(options["surge"])
        )
        self.watching = watch is not None
        aliases = options["aliases"]
        sized = sized_aliases(getattr(settings, "CACHES", {}))
        if aliases:
            unknown = [alias for alias in aliases if alias not in sized]
            if unknown:
                known = ", ".join(sorted(sized)) or "none"
                raise CommandError(
                    f"--alias {unknown[0]!r} is not a sized django-redis cache alias "
                    f"(sized aliases: {known})."
                )
        try:
            concurrency = resolve_concurrency(os.environ, gunicorn_argv(os.environ, sys.argv))
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        render: Callable[[dict[str, Any]], str] = {
            "json": self.as_json,
            "openmetrics": self.as_openmetrics,
            "prometheus": lambda report: self.as_openmetrics(report, openmetrics=False),
        }.get(options["format"], self.as_table)
        failed: list[str] = []
        try:
            while True:
                report = full_report(concurrency, aliases, surge)
                failed = [
                    alias for alias, cache in report["caches"].items() if cache["status"] != "pass"
                ]
                if watch is not None and options["format"] == "table":
                    self.stdout.write(
                        self.style.MIGRATE_HEADING(datetime.now().strftime("%H:%M:%S"))
                    )
                self.stdout.write(render(report))
                if watch is None:
                    break
                self.stdout.flush()
                time.sleep(watch)
        except KeyboardInterrupt:
            pass
        if failed:
            # "failing", not "unreachable": a server that refused the command answered
            raise CommandError(
                f"failing: {', '.join(failed)} (the report's notes say why)", returncode=1
            )
        if options["check"]:
            crowded = [
                alias
                for alias, cache in report["caches"].items()
                if cache["fleet"] is None
                or "warning" in cache["fleet"]
                or cache["fleet"]["budget"]["spare"] is None
            ]
            if crowded:
                raise CommandError(
                    f"the fleet would not fit under maxclients with a {surge:g}% surge, or "
                    f"the server would not say (maxclients unknown): {', '.join(crowded)}",
                    returncode=3,
                )

    @staticmethod
    def as_openmetrics(report: dict[str, Any], *, openmetrics: bool = True) -> str:
        aliases = [
            AliasFigures(
                alias,
                records=records_of(cache["processes"]),
                server=cache["server"] or {},
                ready=cache["status"] == "pass",
            )
            for alias, cache in report["caches"].items()
        ]
        return exposition(aliases, openmetrics=openmetrics)[0].decode().rstrip("\n")

    def as_json(self, report: dict[str, Any]) -> str:
        for cache in report["caches"].values():
            if not cache["notes"]:
                del cache["notes"]
        if self.watching:
            return json.dumps(report)  # one document per line: a stream programs can read
        return json.dumps(report, indent=2)

    def as_table(self, report: dict[str, Any]) -> str:
        c = report["concurrency"]
        s = c["sources"]
        lines = [
            # The command's concurrency, not the fleet's: each row below has its own.
            f"This command's own process: {c['workers']} workers ({s['workers']}) x "
            f"{c['threads']} threads ({s['threads']}), {c['worker_class']}; each process "
            f"below runs its own pool"
        ]
        if not report["caches"]:
            lines.append(
                self.style.WARNING("No sized Redis cache alias: wrap CACHES with sized_caches().")
            )
        for alias, cache in report["caches"].items():
            style = self.style.SUCCESS if cache["status"] == "pass" else self.style.ERROR
            lines += [
                "",
                f"{self.style.MIGRATE_HEADING(f'Cache {alias!r}')}  {style(cache['status'])}",
            ]
            for pool in cache["pools"]:
                knob_text = "  ".join(
                    f"{key} {pool[key]} ({pool['sources'][key]})"
                    for key in (knob.kwarg for knob in KNOBS)
                    if key in pool
                )
                lines.append(f"  pool {pool['location']}")
                lines.append(f"    {knob_text}")
                if "server" in pool:
                    lines.append(f"    server {self._server(pool['server'])}")
            if cache["server"] is not None:
                lines.append(f"  server {self._server(cache['server'])}")
            for note in cache["notes"]:
                lines.append("  " + self.style.WARNING(note))
            if cache["server"] is not None:
                lines += ["  " + line for line in self._processes(cache["processes"])]
                fleet = cache["fleet"]
                lines.append(
                    f"  fleet: {fleet['processes']} processes, "
                    f"{'unknown' if fleet['connections'] is None else fleet['connections']} "
                    "connections, "
                    f"pools up to {fleet['max_connections']} connections "
                    f"(maxclients {_shown(cache['server']['maxclients'])})"
                )
                lines.append("  " + self._budget(fleet["budget"]))
                if "warning" in fleet:
                    lines.append("  " + self.style.WARNING("warning: " + fleet["warning"]))
            if cache["others"]:
                groups = ", ".join(
                    f"{group['name'] or '(unnamed)'} {group['connections']} "
                    f"(idle up to {group['idle_seconds_max']}s)"
                    for group in cache["others"]
                )
                lines.append(f"  others (connections no sized pool opened): {groups}")
        return "\n".join(lines)

    @staticmethod
    def _budget(budget: dict[str, Any]) -> str:
        text = (
            f"budget: {budget['fleet_max_connections']} connections, "
            f"{budget['needed_with_surge']} with a {budget['surge_percent']:g}% surge"
        )
        if budget["spare"] is None:
            return text + " (maxclients unknown)"
        return (
            f"{text}; maxclients {budget['maxclients']} leaves {budget['spare']} spare, room "
            f"for {_shown(budget['processes_that_fit'])} more processes like the largest"
        )

    @staticmethod
    def _server(server: dict[str, Any]) -> str:
        return (
            f"connected_clients {_shown(server['connected_clients'])}  "
            f"maxclients {_shown(server['maxclients'])}"
        )

    def _processes(self, rows: list[dict[str, Any]]) -> list[str]:
        if not rows:
            return ["no process holds connections named by this app"]
        table = [[title for title, _ in COLUMNS]]
        for row in rows:
            cells = ["-" if row[key] is None else str(row[key]) for _, key in COLUMNS]
            if row["age_seconds"] is not None:
                cells[-1] = f"{row['age_seconds']}s"
            if row["stale"]:
                cells[-1] += " stale"
            if row["orphaned"]:
                cells[-1] += " orphaned"
            table.append(cells)
        widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
        out = []
        for number, cells in enumerate(table):
            line = "  ".join(
                cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
            ).rstrip()
            out.append(self.style.SQL_FIELD(line) if number == 0 else line)
        return out
