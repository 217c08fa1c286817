"""The health answers, as documents: what the views and the probe listener both send.

``application/health+json`` (draft-inadarei-api-health-check). Pure of HTTP:
each server of them (Django's views, the probe listener) wraps a document in
its own response.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from django_connhealth.conf import conf
from django_connhealth.probes import FAIL, PASS, WARN, worst
from django_connhealth.watchdog import watchdog

if TYPE_CHECKING:
    from collections.abc import Callable

    from django_connhealth.probes import Result

logger = logging.getLogger("django_connhealth")

CONTENT_TYPE = "application/health+json"
ALLOWED = ("GET", "HEAD")


def http_status(document: dict[str, Any]) -> int:
    """200 for pass and warn, 503 for fail."""
    return 503 if document["status"] == FAIL else 200


def bearer_matches(authorization: str) -> bool:
    """True when an ``Authorization`` header carries ``CONNHEALTH_TOKEN`` (constant time)."""
    token = conf.CONNHEALTH_TOKEN
    scheme, _, offered = authorization.partition(" ")
    offered_token = scheme.lower() == "bearer" and offered.strip()
    return bool(
        token and offered_token and hmac.compare_digest(offered_token.encode(), token.encode())
    )


def misconfigured(exc: ImproperlyConfigured, *, detail: bool) -> dict[str, Any]:
    """A failing answer for a malformed setting; only detail says which."""
    logger.error("health check misconfigured: %s", exc)
    check: dict[str, Any] = {"status": FAIL}
    if detail:
        check["output"] = str(exc)
    return {"status": FAIL, "checks": {"connhealth:configuration": [check]}}


def liveness(sees_detail: Callable[[], bool]) -> dict[str, Any]:
    """Pass, unless the watchdog sees every request thread stuck. No I/O.

    ``sees_detail`` is asked only for a failure, and a malformed token only
    withholds the detail: a setting of readiness never fails liveness.
    """
    stall = watchdog.stall(conf.CONNHEALTH_WATCHDOG_SECONDS)
    if stall is None:
        return {"status": PASS}
    check: dict[str, Any] = {"status": FAIL}
    try:
        detail = sees_detail()
    except ImproperlyConfigured:
        detail = False
    if detail:
        check.update(
            componentType="system",
            observedValue=round(stall.seconds, 3),
            observedUnit="s",
            output=stall.describe(),
        )
    return {"status": FAIL, "checks": {"connhealth:watchdog": [check]}}


def readiness_settings() -> tuple[float, float]:
    """(timeout, ttl) to check with; ImproperlyConfigured for a malformed setting."""
    # Read for their errors only: a malformed interval stops publishing, a malformed
    # threshold leak reports, and neither must pass.
    conf.CONNHEALTH_PUBLISH_SECONDS  # noqa: B018
    conf.CONNHEALTH_LEAK_SECONDS  # noqa: B018
    return conf.CONNHEALTH_CHECK_TIMEOUT, conf.CONNHEALTH_CACHE_SECONDS


def health_document(results: list[Result], *, detail: bool) -> dict[str, Any]:
    """An ``application/health+json`` body (draft-inadarei-api-health-check).

    Without ``detail`` it names failing checks only, with their status: no
    numbers, hosts or error text.
    """
    document: dict[str, Any] = {"status": worst(result.status for result in results)}
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        key = f"redis.{result.alias}:responseTime"
        if not detail:
            if result.status != PASS:
                entry = checks.setdefault(key, [{"status": result.status}])[0]
                entry["status"] = worst((entry["status"], result.status))
            continue
        entry = {
            "componentId": result.location,
            "componentType": "datastore",
            "observedValue": result.response_ms,
            "observedUnit": "ms",
            "status": result.status,
            "time": result.time,
        }
        if result.output:
            entry["output"] = result.output
        checks.setdefault(key, []).append(entry)
        figures = result.figures
        if figures:
            checks.setdefault(f"redis.{result.alias}:connections", []).append(
                {
                    "componentId": result.location,
                    "componentType": "datastore",
                    "observedValue": figures["in_use"],
                    "observedUnit": "connections",
                    "status": WARN if result.status == WARN else PASS,
                    "time": result.time,
                    **figures,
                }
            )
    if checks:
        document["checks"] = checks
    return document
