"""Filling a pool's keyword arguments from the knob table: one way for every adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django_connhealth import defaults
from django_connhealth.knobs import FILLED
from django_connhealth.sizing import pool_size

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from django_connhealth.adapters.base import SizingPlan
    from django_connhealth.knobs import Knob


def fill_pool_kwargs(
    kwargs: dict[str, Any],
    plan: SizingPlan,
    *,
    name: str,
    ours: bool,
    set_by_user: Callable[[Knob], bool],
) -> dict[str, str]:
    """Fill into ``kwargs`` what the user did not set; the source of each value.

    ``ours`` says the pool is this app's class: only then are the keywords
    only a blocking pool takes, the retry and the naming filled in.
    """
    sources: dict[str, str] = {}
    if "max_connections" in kwargs:
        sources["max_connections"] = "OPTIONS"
    else:
        kwargs["max_connections"] = pool_size(plan.concurrency, plan.headroom)
        sources["max_connections"] = "derived"
    for knob in FILLED:
        if set_by_user(knob):
            sources[knob.kwarg] = "OPTIONS"
        elif ours or knob.pools == "any":
            # the pool class of the user's may not take a blocking pool's keywords
            kwargs[knob.kwarg] = knob.default
            sources[knob.kwarg] = "default"
    if ours:
        if "retry" in kwargs or "connhealth_retries" in kwargs:
            sources["retry"] = "OPTIONS"
        else:
            kwargs["connhealth_retries"] = defaults.RETRIES
            sources["retry"] = "default"
        kwargs["connhealth_alias"] = name
        kwargs["connhealth_host"] = plan.host
    return sources


def sizing_record(plan: SizingPlan, sources: Mapping[str, str]) -> dict[str, Any]:
    """What ``OPTIONS["CONNHEALTH"]`` records: the concurrency, the headroom, the sources."""
    return {
        "concurrency": plan.concurrency.as_dict(),
        "headroom": plan.headroom,
        "sources": dict(sources),
    }


def pool_name(kwargs: Mapping[str, Any], alias: str) -> str:
    """The alias part of the names of a pool's connections, as sizing set it."""
    return str(kwargs.get("connhealth_alias", alias))


def pool_host(kwargs: Mapping[str, Any]) -> str | None:
    """The host part of those names, when sizing set one."""
    host = kwargs.get("connhealth_host")
    return str(host) if host else None
