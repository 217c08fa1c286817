"""``ProbeMiddleware``: answer health probes before anything can refuse them.

Placed first in MIDDLEWARE, it answers the health paths before
``ALLOWED_HOSTS`` is consulted (the kubelet sends the pod IP as Host), and
before CSRF and session middleware run. A request that carries a session
cookie goes on through the URLconf, so staff users get their detail.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.urls import NoReverseMatch, get_script_prefix, reverse

from django_connhealth import views

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from django.http import HttpRequest, HttpResponse

_paths_lock = threading.Lock()
_paths: dict[str, dict[str, str]] = {}


def health_paths() -> dict[str, str]:
    """``path_info`` → ``"live"`` or ``"ready"`` for the mounted health URLs."""
    urlconf = str(getattr(settings, "ROOT_URLCONF", ""))
    with _paths_lock:
        found = _paths.get(urlconf)
    if found is not None:
        return found
    found = {}
    prefix = get_script_prefix()
    kinds = (("health", "ready"), ("ready", "ready"), ("live", "live"), ("metrics", "metrics"))
    for name, kind in kinds:
        try:
            url = reverse(f"connhealth:{name}")
        except NoReverseMatch:
            continue
        found["/" + url[len(prefix) :] if url.startswith(prefix) else url] = kind
    with _paths_lock:
        _paths[urlconf] = found
    return found


def forget_paths() -> None:
    """Look the health URLs up afresh (the URLconf changed)."""
    with _paths_lock:
        _paths.clear()


def after_fork() -> None:
    """In a forked child: a lock a parent's thread held at the fork is made anew."""
    global _paths_lock
    _paths_lock = threading.Lock()


class ProbeMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _probe(self, request: HttpRequest) -> str | None:
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            return None
        return health_paths().get(request.path_info)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        kind = self._probe(request)
        if kind is None:
            return self.get_response(request)
        return {"live": views.live, "metrics": views.metrics}.get(kind, views.ready)(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        kind = self._probe(request)
        if kind is None:
            return await self.get_response(request)  # type: ignore[no-any-return,misc]
        if kind == "metrics":
            return await views.ametrics(request)
        return views.live(request) if kind == "live" else await views.aready(request)
