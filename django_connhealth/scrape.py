"""One scrape: every sized alias's published records and server figures, and readiness.

The records are read (no ``CLIENT LIST``: a scrape every few seconds must stay
cheap on the server's main thread); a process's rows are this host's unless
the scrape asks for the whole fleet.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

from django_connhealth.adapters.registry import sized_aliases
from django_connhealth.conf import client_host
from django_connhealth.metrics import AliasFigures, exposition, wants_openmetrics
from django_connhealth.probes import FAIL
from django_connhealth.report import published_records, server_figures

if TYPE_CHECKING:
    from django_connhealth.probes import Result

#: The one value ``?scope=`` takes: every host.
FLEET = "fleet"


def scope_error(scope: str | None) -> str | None:
    """What is wrong with a ``scope`` query value, or None."""
    if scope is None or scope == FLEET:
        return None
    return (
        f"scope={scope!r} is not valid: leave it out (this host's processes) or give scope=fleet."
    )


def alias_figures(fleet: bool, readiness: list[Result] | None = None) -> list[AliasFigures]:
    """Every sized alias's figures: this host's processes, or every host's with ``fleet``."""
    ready: dict[str, bool] = {}
    for result in readiness or []:
        ready[result.alias] = ready.get(result.alias, True) and result.status != FAIL
    found = []
    for alias, (adapter, config) in sized_aliases(getattr(settings, "CACHES", {})).items():
        host = adapter.pool_host(config) or client_host(os.environ)
        figures = AliasFigures(alias, ready=ready.get(alias) if readiness is not None else None)
        try:
            client = adapter.alias_pools(alias, config)[0].client
            figures.server = server_figures(client)
            records = published_records(client, adapter.pool_name(alias, config))
        except (RedisError, OSError, ImproperlyConfigured, ValueError, TypeError, IndexError):
            records = {}  # no figures to give: readiness says why
        figures.records = [
            record
            for (record_host, _), record in sorted(records.items())
            if not record.get("stale") and (fleet or record_host == host)
        ]
        found.append(figures)
    return found


def records_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The command's ``processes`` rows that carry published figures, as records."""
    return [row for row in rows if row.get("max_connections") is not None and not row["stale"]]


def metrics_answer(
    authorized: bool, scope: str | None, accept: str, readiness: list[Result] | None
) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type) of a scrape of ``health/metrics``.

    403 with no body for anyone but the bearer of the token (or staff); 400 for
    a ``scope`` it does not know.
    """
    if not authorized:
        return 403, b"", "text/plain; charset=utf-8"
    error = scope_error(scope)
    if error is not None:
        return 400, error.encode(), "text/plain; charset=utf-8"
    body, content_type = exposition(
        alias_figures(scope == FLEET, readiness), openmetrics=wants_openmetrics(accept)
    )
    return 200, body, content_type
