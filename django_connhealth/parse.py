"""Parsers for the numbers users write: counts and seconds, one error text each.

Settings, environment variables and command flags all go through these, so a
malformed value is reported the same way wherever it was written.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from django_connhealth import defaults
from django_connhealth.errors import SettingError

if TYPE_CHECKING:
    from collections.abc import Mapping

_DIGITS = re.compile(r"[0-9]+")


def parse_count(name: str, value: object, *, minimum: int = 1) -> int:
    """A whole number from ``minimum`` to ``MAX_COUNT``, or SettingError naming ``name``."""
    text = str(value).strip()
    # Leading zeros stripped and length checked before int(): a string of more than
    # 4300 digits would make int() raise ValueError instead of the error below.
    digits = text.lstrip("0") or "0"
    if (
        not _DIGITS.fullmatch(text)
        or len(digits) > len(str(defaults.MAX_COUNT))
        or not minimum <= int(digits) <= defaults.MAX_COUNT
    ):
        raise SettingError(
            f"{name}={value!r} is not valid",
            f"set it to a whole number from {minimum} to {defaults.MAX_COUNT}, or unset it.",
        )
    return int(text)


def env_count(environ: Mapping[str, str], name: str, *, minimum: int = 1) -> int | None:
    """A count from ``environ``; ``None`` when unset or empty (blank is malformed)."""
    value = environ.get(name, "")
    if not value:
        return None
    return parse_count(name, value, minimum=minimum)


def parse_seconds(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    zero: bool = True,
    maximum: float = defaults.MAX_SECONDS,
    flag: bool = False,
) -> float:
    """A finite number of seconds in range, or SettingError naming ``name``.

    With ``zero`` (0 often means "off") 0 is allowed; any other value must be
    above 0 and at least ``minimum``. A ``flag`` is named as written on a
    command line (``--watch 'abc'``) and its fix says what to give instead.
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
        valid = not isinstance(value, bool) and math.isfinite(seconds)
    except (TypeError, ValueError):
        valid = False
    if valid:
        valid = ((seconds == 0 and zero) or (seconds > 0 and seconds >= minimum)) and (
            seconds <= maximum
        )
    if not valid:
        lowest = f"{minimum:g}" if minimum else ("0" if zero else "more than 0")
        seconds_range = f"a number of seconds from {lowest} to {maximum:g}"
        if minimum and zero:
            seconds_range = f"0 (off) or {seconds_range}"
        if flag:
            raise SettingError(f"{name} {value!r} is not valid", f"give {seconds_range}.")
        raise SettingError(
            f"{name}={value!r} is not valid", f"set it to {seconds_range}, or unset it."
        )
    return seconds
