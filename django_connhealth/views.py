"""Health endpoints: liveness (no I/O) and readiness (a PING per pool, bounded)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from django_connhealth.answers import (
    ALLOWED,
    CONTENT_TYPE,
    bearer_matches,
    health_document,
    http_status,
    liveness,
    misconfigured,
    readiness_settings,
)
from django_connhealth.readiness import readiness


def _response(request: HttpRequest, document: dict[str, Any]) -> HttpResponse:
    body = b"" if request.method == "HEAD" else json.dumps(document).encode()
    response = HttpResponse(body, content_type=CONTENT_TYPE, status=http_status(document))
    response["Cache-Control"] = "no-store"
    return response


def _not_allowed() -> HttpResponse:
    response = HttpResponseNotAllowed(ALLOWED)
    response["Cache-Control"] = "no-store"
    return response


def can_see_detail(request: HttpRequest) -> bool:
    """True for the bearer of ``CONNHEALTH_TOKEN`` or an active staff user."""
    # request.META, not request.headers: that would copy every header
    if bearer_matches(request.META.get("HTTP_AUTHORIZATION", "")):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@csrf_exempt
def live(request: HttpRequest) -> HttpResponse:
    """The process serves requests. Touches neither Redis nor the database."""
    if request.method not in ALLOWED:
        return _not_allowed()
    try:
        return _response(request, liveness(lambda: can_see_detail(request)))
    except ImproperlyConfigured as exc:
        return _response(request, misconfigured(exc, detail=False))


@csrf_exempt
def ready(request: HttpRequest) -> HttpResponse:
    """Every sized Redis alias answers a PING through its own pool, in bounded time."""
    if request.method not in ALLOWED:
        return _not_allowed()
    detail = False
    try:
        detail = can_see_detail(request)
        timeout, ttl = readiness_settings()
    except ImproperlyConfigured as exc:
        return _response(request, misconfigured(exc, detail=detail))
    return _response(request, health_document(readiness.results(timeout, ttl), detail=detail))


async def aready(request: HttpRequest) -> HttpResponse:
    """:func:`ready` for async stacks: the wait never blocks the event loop."""
    if request.method not in ALLOWED:
        return _not_allowed()
    detail = False
    try:
        detail = can_see_detail(request)
        timeout, ttl = readiness_settings()
    except ImproperlyConfigured as exc:
        return _response(request, misconfigured(exc, detail=detail))
    results = await readiness.aresults(timeout, ttl)
    return _response(request, health_document(results, detail=detail))
