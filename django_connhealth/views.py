"""Health endpoints: liveness (no I/O) and readiness (a PING per pool, bounded)."""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from django_connhealth.conf import conf
from django_connhealth.probes import FAIL, PASS, WARN, worst
from django_connhealth.readiness import readiness

if TYPE_CHECKING:
    from django_connhealth.probes import Result

logger = logging.getLogger("django_connhealth")

CONTENT_TYPE = "application/health+json"
ALLOWED = ("GET", "HEAD")


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


def _response(request: HttpRequest, document: dict[str, Any]) -> HttpResponse:
    status = 503 if document["status"] == FAIL else 200
    body = b"" if request.method == "HEAD" else json.dumps(document).encode()
    response = HttpResponse(body, content_type=CONTENT_TYPE, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _not_allowed() -> HttpResponse:
    response = HttpResponseNotAllowed(ALLOWED)
    response["Cache-Control"] = "no-store"
    return response


def can_see_detail(request: HttpRequest) -> bool:
    """True for the bearer of ``CONNHEALTH_TOKEN`` or an active staff user."""
    token = conf.CONNHEALTH_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")  # request.headers copies every header
    scheme, _, offered = header.partition(" ")
    offered_token = scheme.lower() == "bearer" and offered.strip()
    if token and offered_token and hmac.compare_digest(offered_token.encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _misconfigured(request: HttpRequest, exc: ImproperlyConfigured, detail: bool) -> HttpResponse:
    logger.error("health check misconfigured: %s", exc)
    check: dict[str, Any] = {"status": FAIL}
    if detail:
        check["output"] = str(exc)
    return _response(request, {"status": FAIL, "checks": {"connhealth:configuration": [check]}})


@csrf_exempt
def live(request: HttpRequest) -> HttpResponse:
    """The process serves requests. Touches neither Redis nor the database."""
    if request.method not in ALLOWED:
        return _not_allowed()
    return _response(request, {"status": PASS})


def _begin(request: HttpRequest) -> HttpResponse | tuple[bool, float, float]:
    """An early answer, or (detail, timeout, ttl) to check with."""
    if request.method not in ALLOWED:
        return _not_allowed()
    try:
        detail = can_see_detail(request)
    except ImproperlyConfigured as exc:
        return _misconfigured(request, exc, detail=False)
    try:
        # Read for its error only: a malformed interval stops publishing, and must not pass.
        conf.CONNHEALTH_PUBLISH_SECONDS  # noqa: B018
        return detail, conf.CONNHEALTH_CHECK_TIMEOUT, conf.CONNHEALTH_CACHE_SECONDS
    except ImproperlyConfigured as exc:
        return _misconfigured(request, exc, detail)


@csrf_exempt
def ready(request: HttpRequest) -> HttpResponse:
    """Every sized Redis alias answers a PING through its own pool, in bounded time."""
    begun = _begin(request)
    if isinstance(begun, HttpResponse):
        return begun
    detail, timeout, ttl = begun
    return _response(request, health_document(readiness.results(timeout, ttl), detail=detail))


async def aready(request: HttpRequest) -> HttpResponse:
    """:func:`ready` for async stacks: the wait never blocks the event loop."""
    begun = _begin(request)
    if isinstance(begun, HttpResponse):
        return begun
    detail, timeout, ttl = begun
    results = await readiness.aresults(timeout, ttl)
    return _response(request, health_document(results, detail=detail))
