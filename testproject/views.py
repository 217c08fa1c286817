"""Views that use the cache the way an application does, and one that shows the pools."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache import caches as cache_handler
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django_redis import get_redis_connection

from django_connhealth.pool import live_pools

if TYPE_CHECKING:
    from django.http import HttpRequest

COUNTER_KEY = "testproject:visits"
WORK_KEY = "testproject:work"


def _text(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


@never_cache
def index(request: HttpRequest) -> HttpResponse:
    """Count visits in the cache."""
    try:
        count = cache.incr(COUNTER_KEY)
    except ValueError:  # no counter yet; add() keeps one another request just made
        cache.add(COUNTER_KEY, 0, timeout=None)
        count = cache.incr(COUNTER_KEY)
    return _text(
        f"django-connhealth test project: visit {count}, served by process {os.getpid()}.\n"
        f"See /pool for this process's Redis pool.\n"
    )


def ok(request: HttpRequest) -> HttpResponse:
    """No cache, no database: the floor for benchmarks."""
    return _text("ok")


@never_cache
def work(request: HttpRequest) -> HttpResponse:
    """Three cache calls, as a typical view makes: get, set, get."""
    before = cache.get(WORK_KEY)
    cache.set(WORK_KEY, (before or 0) + 1, timeout=300)
    after = cache.get(WORK_KEY)
    return _text(f"work {after}")


@never_cache
def work_builtin(request: HttpRequest) -> HttpResponse:
    """:func:`work` through the alias on Django's built-in RedisCache (TESTPROJECT_BUILTIN)."""
    builtin = cache_handler["builtin"]
    before = builtin.get(WORK_KEY)
    builtin.set(WORK_KEY, (before or 0) + 1, timeout=300)
    return _text(f"work {builtin.get(WORK_KEY)}")


@never_cache
def pool(request: HttpRequest) -> JsonResponse:
    """This process's sized pools and the concurrency they were sized for.

    Figures are per process: each gunicorn worker answers with its own pid.
    Only counts and names: never a LOCATION (it may hold a password).
    """
    caches: dict[str, dict[str, Any]] = settings.CACHES
    recorded = caches["default"]["OPTIONS"]["CONNHEALTH"]  # what sized_caches() computed
    pools = [
        {"alias": sized.alias, "host": sized.host, **sized.figures().as_dict()}
        for sized in live_pools()
    ]
    return JsonResponse(
        {
            "pid": os.getpid(),
            "concurrency": recorded["concurrency"],
            "headroom": recorded["headroom"],
            "sources": recorded["sources"],
            "pools": pools,
        }
    )


#: The longest a /hold request may keep its connection.
HOLD_MAX_SECONDS = 60.0


@never_cache
def hold(request: HttpRequest) -> HttpResponse:
    """Keep a pooled connection of the default alias for ``?seconds=`` (0 to 60), then answer.

    A request thread that is stuck, for the liveness watchdog and leak reports to see.
    """
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= HOLD_MAX_SECONDS:
        return HttpResponseBadRequest(
            f"seconds={request.GET.get('seconds')!r} is not valid: "
            f"give a number of seconds from 0 to {HOLD_MAX_SECONDS:g}.",
            content_type="text/plain; charset=utf-8",
        )
    # A client of one connection, taken from the pool as redis-py takes one (a
    # pub/sub or a lock holds one so), and given back when it closes.
    with get_redis_connection("default").client() as held:
        held.ping()
        time.sleep(seconds)
    return _text(f"held a connection for {seconds:g} s")
