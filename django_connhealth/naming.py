"""Server-side names of pooled connections: ``connhealth:<host>:<pid>:<alias>``."""

from __future__ import annotations

import re
from typing import NamedTuple

from django_connhealth.defaults import CLIENT_NAME_PREFIX

# Redis refuses client names with characters outside "!".."~" (so no spaces).
_REFUSED = re.compile(r"[^!-~]")


class ClientName(NamedTuple):
    host: str
    pid: int
    alias: str


def clean(text: str, *, colons: bool) -> str:
    """``text`` with what Redis refuses in a name (and, unless ``colons``, ``:``) as ``_``."""
    cleaned = _REFUSED.sub("_", text)
    return cleaned if colons else cleaned.replace(":", "_")


def client_name(host: str, pid: int, alias: str) -> str:
    """The name a connection opened by process ``pid`` for ``alias`` carries."""
    return f"{CLIENT_NAME_PREFIX}:{clean(host, colons=False)}:{pid}:{clean(alias, colons=True)}"


def parse_client_name(name: str) -> ClientName | None:
    """Split a name made by :func:`client_name`; ``None`` for any other name."""
    parts = name.split(":", 3)
    # isascii(): str.isdigit() is true for "²", which int() refuses
    if (
        len(parts) != 4
        or parts[0] != CLIENT_NAME_PREFIX
        or not parts[2].isascii()
        or not parts[2].isdigit()
    ):
        return None
    return ClientName(parts[1], int(parts[2]), parts[3])
