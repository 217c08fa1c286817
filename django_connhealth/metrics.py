"""The fleet's pools as Prometheus metrics, from the records each process publishes.

Every process already publishes its pool figures to the Redis it measures, so
one scrape of any worker sees every process of its host (or, with
``scope=fleet``, of every host), with no multiprocess directory. Built with
``prometheus_client``'s metric families and its two expositions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

PROCESS_LABELS = ("alias", "host", "pid")
#: The Prometheus text format every scraper and promtool read (prometheus_client's
#: own constant names a newer version of it).
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: (family, type, help, the record's figure) of each per-process family.
POOL_FAMILIES = (
    ("connhealth_pool_max_connections", "gauge", "The pool's max_connections.", "max_connections"),
    (
        "connhealth_pool_peak_used_connections",
        "gauge",
        "Peak connections in use since the publication before.",
        "peak_in_use",
    ),
    ("connhealth_pool_waits", "counter", "Checkouts that had to wait.", "waits"),
    ("connhealth_pool_wait_seconds", "counter", "Seconds spent waiting.", "wait_seconds"),
    ("connhealth_pool_timeouts", "counter", "Waits that gave up.", "timeouts"),
    (
        "connhealth_pool_leaks",
        "counter",
        "Connections held past CONNHEALTH_LEAK_SECONDS.",
        "leaks",
    ),
)


@dataclass
class AliasFigures:
    """What one alias's metrics are made of."""

    alias: str
    records: Sequence[Mapping[str, Any]] = field(default_factory=list)
    server: Mapping[str, Any] = field(default_factory=dict)
    ready: bool | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def families(aliases: Iterable[AliasFigures]) -> Iterator[Metric]:
    """The metric families of SPEC section 6, for ``aliases``."""
    aliases = list(aliases)
    connections = GaugeMetricFamily(
        "connhealth_pool_connections",
        "Connections of a process's pool at its last publication, by state.",
        labels=[*PROCESS_LABELS, "state"],
    )
    pools: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        name: (
            CounterMetricFamily(name, text, labels=list(PROCESS_LABELS))
            if kind == "counter"
            else GaugeMetricFamily(name, text, labels=list(PROCESS_LABELS))
        )
        for name, kind, text, _ in POOL_FAMILIES
    }
    clients = GaugeMetricFamily(
        "connhealth_server_connected_clients", "The server's connected_clients.", labels=["alias"]
    )
    maxclients = GaugeMetricFamily(
        "connhealth_server_maxclients", "The server's maxclients.", labels=["alias"]
    )
    ready = GaugeMetricFamily(
        "connhealth_ready",
        "1 when this process's readiness check of the alias passes, else 0.",
        labels=["alias"],
    )
    for figures in aliases:
        for record in figures.records:
            labels = [figures.alias, str(record["host"]), str(record["pid"])]
            for state, figure in (("used", "in_use"), ("idle", "idle")):
                value = _number(record.get(figure))
                if value is not None:
                    connections.add_metric([*labels, state], value)
            for name, _, _, figure in POOL_FAMILIES:
                value = _number(record.get(figure))
                if value is not None:
                    pools[name].add_metric(labels, value)
        for family, figure in ((clients, "connected_clients"), (maxclients, "maxclients")):
            value = _number(figures.server.get(figure))
            if value is not None:
                family.add_metric([figures.alias], value)
        if figures.ready is not None:
            ready.add_metric([figures.alias], 1.0 if figures.ready else 0.0)
    yield connections
    yield from pools.values()
    yield clients
    yield maxclients
    yield ready


class _Collected:
    """A collector of families already worked out (prometheus_client's interface)."""

    def __init__(self, collected: list[Metric]) -> None:
        self._collected = collected

    def collect(self) -> list[Metric]:
        return self._collected


def exposition(aliases: Iterable[AliasFigures], *, openmetrics: bool = True) -> tuple[bytes, str]:
    """(body, content type): OpenMetrics text, or Prometheus text 0.0.4."""
    collector = _Collected(list(families(aliases)))
    if openmetrics:
        body: bytes = generate_openmetrics(collector)  # type: ignore[no-untyped-call]
        return body, OPENMETRICS_TYPE
    return generate_latest(collector), PROMETHEUS_TYPE


def wants_openmetrics(accept: str) -> bool:
    """OpenMetrics unless the scraper's ``Accept`` asks only for the Prometheus text."""
    kinds = [part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()]
    if "application/openmetrics-text" in kinds:
        return True
    return not (kinds and all(kind == "text/plain" for kind in kinds))
