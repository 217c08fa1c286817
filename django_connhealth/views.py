"""Health endpoints: liveness (no I/O) and readiness (a PING per pool, bounded)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
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
from django_connhealth.scrape import metrics_answer


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


def _begin(request: HttpRequest) -> HttpResponse | tuple[bool, float, float]:
    """An early answer (a method, a malformed setting), or (detail, timeout, ttl)."""
    if request.method not in ALLOWED:
        return _not_allowed()
    detail = False
    try:
        detail = can_see_detail(request)
        return (detail, *readiness_settings())
    except ImproperlyConfigured as exc:
        return _response(request, misconfigured(exc, detail=detail))


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


def _metrics_response(status: int, body: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _scrape_allowed(request: HttpRequest) -> bool:
    try:
        return can_see_detail(request)
    except ImproperlyConfigured:  # a malformed token lets no one in
        return False


@csrf_exempt
def metrics(request: HttpRequest) -> HttpResponse:
    """The fleet's pools as OpenMetrics (or Prometheus) text, for the token or staff."""
    if request.method not in ALLOWED:
        return _not_allowed()
    allowed = _scrape_allowed(request)
    results = None
    if allowed:
        try:
            results = readiness.results(*readiness_settings())
        except ImproperlyConfigured:
            results = []
    status, body, content_type = metrics_answer(
        allowed, request.GET.get("scope"), request.META.get("HTTP_ACCEPT", ""), results
    )
    return _metrics_response(status, b"" if request.method == "HEAD" else body, content_type)


async def ametrics(request: HttpRequest) -> HttpResponse:
    """:func:`metrics` for async stacks: the reads run off the event loop."""
    return await sync_to_async(metrics, thread_sensitive=False)(request)
