"""The pool knobs: one table that filling, reading back, the checks and the report use.

A knob is one setting of a redis-py pool: the keyword the pool takes, the
OPTIONS key a backend also accepts for it, the default ``sized_caches()`` fills
in, how a URL's query string spells it, which pools take it and which check
fires when a pool runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from django_connhealth import defaults

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: ``any``: every redis-py pool takes the keyword; ``blocking``: only a
#: ``BlockingConnectionPool`` (so this app's pool) does.
Pools = Literal["any", "blocking"]


class Knob(NamedTuple):
    """One pool setting."""

    #: the pool's keyword argument (in ``CONNECTION_POOL_KWARGS`` and URL queries)
    kwarg: str
    #: the django-redis OPTIONS key that sets it too (django-redis ignores a false value)
    option: str | None
    #: what ``sized_caches()`` fills in; ``None``: derived from the concurrency
    default: float | None
    #: reads the value from a URL's query string, as redis-py does
    parse: Callable[[str], Any]
    #: which pools take the keyword
    pools: Pools
    #: the check that fires when a pool runs without a value (``None``, ``0``)
    check_when_unset: str | None = None


KNOBS: tuple[Knob, ...] = (
    Knob("max_connections", None, None, int, "any"),
    Knob("timeout", None, defaults.POOL_TIMEOUT, float, "blocking"),
    Knob(
        "socket_timeout",
        "SOCKET_TIMEOUT",
        defaults.SOCKET_TIMEOUT,
        float,
        "any",
        check_when_unset="connhealth.W005",
    ),
    Knob(
        "socket_connect_timeout",
        "SOCKET_CONNECT_TIMEOUT",
        defaults.SOCKET_CONNECT_TIMEOUT,
        float,
        "any",
        check_when_unset="connhealth.W006",
    ),
    Knob("health_check_interval", None, defaults.HEALTH_CHECK_INTERVAL, int, "any"),
)

#: The knobs ``sized_caches()`` fills with a default (``max_connections`` is derived).
FILLED = tuple(knob for knob in KNOBS if knob.default is not None)

#: OPTIONS keys that shape the pool django-redis builds for a URL: the knobs'
#: own keys, and those that pick the pool class, its keywords and its credentials.
POOL_SHAPING_OPTIONS: tuple[str, ...] = (
    "CONNECTION_POOL_CLASS",
    "CONNECTION_POOL_KWARGS",
    *(knob.option for knob in KNOBS if knob.option),
    "PARSER_CLASS",
    "USERNAME",
    "PASSWORD",
)


def set_by_user(knob: Knob, options: Mapping[str, Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether the user set ``knob``, the way django-redis reads it.

    A keyword in ``CONNECTION_POOL_KWARGS`` counts whatever its value; an
    OPTIONS key counts only when true, since django-redis ignores ``0`` and
    ``None`` there (``OPTIONS["SOCKET_TIMEOUT"] = 0`` leaves the timeout unset).
    """
    return knob.kwarg in kwargs or bool(knob.option and options.get(knob.option))


def ignored_option(knob: Knob, options: Mapping[str, Any]) -> bool:
    """Whether OPTIONS sets ``knob``'s key to a false value, which django-redis ignores."""
    return knob.option is not None and knob.option in options and not options[knob.option]
