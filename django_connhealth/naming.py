"""Server-side names of pooled connections: ``connhealth:<host>:<pid>:<alias>``."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, NamedTuple

from django_connhealth.defaults import CLIENT_NAME_PREFIX

if TYPE_CHECKING:
    from collections.abc import Mapping

# Redis refuses client names with characters outside "!".."~" (so no spaces).
_REFUSED = re.compile(r"[^!-~]")


class ClientName(NamedTuple):
    host: str
    pid: int
    alias: str


def _clean(text: str, *, colons: bool) -> str:
    cleaned = _REFUSED.sub("_", text)
    return cleaned if colons else cleaned.replace(":", "_")


def client_host(environ: Mapping[str, str]) -> str:
    """The ``<host>`` part: ``CONNHEALTH_HOST`` if set, else the machine's hostname."""
    host = environ.get("CONNHEALTH_HOST", "").strip() or socket.gethostname()
    return _clean(host, colons=False) or "unknown"


def client_name(host: str, pid: int, alias: str) -> str:
    """The name a connection opened by process ``pid`` for ``alias`` carries."""
    return f"{CLIENT_NAME_PREFIX}:{_clean(host, colons=False)}:{pid}:{_clean(alias, colons=True)}"


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
